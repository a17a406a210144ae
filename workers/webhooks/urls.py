"""Which webhook URLs may be called, and which addresses may be connected to.

Two checks, because one cannot see everything:

- **At submit** (``check_url``, no DNS): the URL's shape — ``https``, or ``http`` for a
  host listed in ``AIJOBS_WEBHOOK_ALLOWED_HOSTS``; no credentials; printable ASCII only —
  and, for a host that is an address literal (``127.1``, ``[::ffff:127.0.0.1]`` and the
  other spellings the resolver accepts too) or a local name (``localhost``, one label),
  where it points.
- **At delivery** (``address_refusal``, in ``aijobs.webhooks.transport``): every address
  the host resolves to at that moment, and the connection goes to the address that was
  checked. Resolving at submit would prove nothing — the name may point elsewhere by the
  time the job ends (DNS rebinding) — so it is not done there.

A listed host skips the address checks: listing is how an operator says "this internal
endpoint is mine".
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS = 2048
#: Names that are local by definition (RFC 6761, RFC 8375) or by wide convention.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".lan")
#: NAT64's well-known prefix: the last 32 bits are an IPv4 address reached through it.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UrlRejected(ValueError):
    """Raised when a webhook URL (or the address it resolves to) may not be called."""


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A checked webhook URL, taken apart once (the delivery uses these very parts)."""

    url: str
    scheme: str
    #: Lower case, no brackets, no trailing dot: the form compared with the allow-list.
    host: str
    port: int
    #: Path and query, as sent in the request line.
    target: str
    #: Listed in AIJOBS_WEBHOOK_ALLOWED_HOSTS: ``http`` and any address are allowed.
    listed: bool

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the host, with the port unless it is the scheme's own."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def normalise_host(host: str) -> str:
    """A host as the allow-list compares it: lower case, no brackets, no trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def check_url(url: str, allowed_hosts: Collection[str]) -> WebhookTarget:
    """The parts of ``url`` if it may be called, else ``UrlRejected`` saying why."""
    if len(url) > MAX_URL_CHARS:
        raise UrlRejected(f"at most {MAX_URL_CHARS} characters")
    # One parser's reading must be the only one: no spaces, controls or non-ASCII (which
    # other parsers read differently), no backslashes (some treat them as slashes).
    if not all(33 <= ord(c) <= 126 for c in url) or "\\" in url:
        raise UrlRejected(
            "printable ASCII only, without spaces or backslashes (punycode the host, "
            "percent-encode the rest)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRejected(f"not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UrlRejected("must be an https:// URL")
    if "@" in parts.netloc:
        raise UrlRejected("credentials in the URL are not accepted (put a token in the path)")
    host = normalise_host(parts.hostname or "")
    if not host:
        raise UrlRejected("has no host")
    listed = host in {normalise_host(h) for h in allowed_hosts}
    if scheme == "http" and not listed:
        raise UrlRejected(
            f"must be https:// (http:// only for hosts listed in AIJOBS_WEBHOOK_ALLOWED_HOSTS; "
            f"{host} is not)"
        )
    if not listed:
        _check_host(host)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if scheme == "https" else 80
    return WebhookTarget(url, scheme, host, port or default_port, target, listed)


def _check_host(host: str) -> None:
    """Refuse an unlisted host that is, without asking DNS, a non-public place."""
    address = address_literal(host)
    if address is not None:
        reason = address_refusal(address)
        if reason:
            raise UrlRejected(f"{host} is a {reason} address")
        return
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
        raise UrlRejected(f"{host} is a local name")
    if "." not in host:
        raise UrlRejected(f"{host} is a local name (no domain)")


def address_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form the system's resolver would read as one
    (``127.1``, ``0x7f000001``, ``2130706433`` are all 127.0.0.1), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` must not be connected to (None: it is a public unicast address).

    IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, 6to4, NAT64) are
    judged by the IPv4 address they reach.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),  # is_global says yes to 224.0.0.0/4
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),  # 100.64.0.0/10 and the like
    )
    return next((name for name, hit in checks if hit), None)
