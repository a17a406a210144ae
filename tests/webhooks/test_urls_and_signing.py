"""The URL policy and the signatures, on their own: every spelling of a non-public address
is refused unless listed, and every signature verifies with the spec's own library."""

from __future__ import annotations

import base64
import ipaddress
import time

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from aijobs.settings import Settings
from aijobs.webhooks.signing import Signer, parse_secrets
from aijobs.webhooks.urls import UrlRejected, address_refusal, check_url

LISTED = ("hooks.internal.example", "127.0.0.1", "::1")

REFUSED = [
    ("http://example.com/hook", "must be https"),
    ("ftp://example.com/hook", "must be an https"),
    ("https://127.0.0.1/hook", "loopback"),
    ("https://127.1/hook", "loopback"),  # the resolver reads it as 127.0.0.1
    ("https://2130706433/hook", "loopback"),
    ("https://0x7f000001/hook", "loopback"),
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback"),
    ("https://[::ffff:7f00:1]/hook", "loopback"),
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://[::]/hook", "unspecified"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://[fe80::1%25eth0]/hook", "link-local"),
    ("https://10.0.0.5/hook", "private"),
    ("https://172.16.3.4/hook", "private"),
    ("https://192.168.1.1/hook", "private"),
    ("https://[fc00::1]/hook", "private"),
    ("https://[::ffff:10.0.0.1]/hook", "private"),
    ("https://[2002:a00:1::]/hook", "private"),  # 6to4 of 10.0.0.1
    ("https://[64:ff9b::a9fe:a9fe]/hook", "link-local"),  # NAT64 of 169.254.169.254
    ("https://100.64.0.1/hook", "non-public"),  # carrier-grade NAT
    ("https://224.0.0.1/hook", "multicast"),
    ("https://240.0.0.1/hook", "reserved"),
    ("https://localhost/hook", "local name"),
    ("https://api.localhost/hook", "local name"),
    ("https://metadata.google.internal/computeMetadata", "local name"),
    ("https://intranet/hook", "local name"),
    ("https://user:pass@example.com/hook", "credentials"),
    ("https://example.com@10.0.0.1/hook", "credentials"),
    ("https://exa mple.com/hook", "printable ASCII"),
    ("https://example.com\\@10.0.0.1/", "backslashes"),
    ("https://bücher.example/hook", "printable ASCII"),
    ("https:///hook", "no host"),
    ("https://example.com:99999/hook", "not a URL"),
    ("https://" + "a" * 2100 + ".com/", "2048"),
]


@pytest.mark.parametrize(("url", "phrase"), REFUSED)
def test_refused_urls_say_why(url: str, phrase: str) -> None:
    with pytest.raises(UrlRejected, match=phrase):
        check_url(url, ["hooks.internal.example"])


@pytest.mark.parametrize(
    ("url", "host", "port", "target", "listed"),
    [
        ("https://example.com/hook?a=1", "example.com", 443, "/hook?a=1", False),
        ("https://EXAMPLE.com.:8443", "example.com", 8443, "/", False),
        ("https://[2606:4700::1111]/h", "2606:4700::1111", 443, "/h", False),
        ("https://8.8.8.8/h", "8.8.8.8", 443, "/h", False),
        ("http://127.0.0.1:8080/h", "127.0.0.1", 8080, "/h", True),
        ("http://[::1]:8080/h", "::1", 8080, "/h", True),
        ("http://hooks.internal.example/h", "hooks.internal.example", 80, "/h", True),
    ],
)
def test_accepted_urls_are_taken_apart_once(
    url: str, host: str, port: int, target: str, listed: bool
) -> None:
    checked = check_url(url, LISTED)
    assert (checked.host, checked.port, checked.target, checked.listed) == (
        host, port, target, listed,
    )  # fmt: skip


def test_the_host_header_brackets_ipv6_and_drops_default_ports() -> None:
    assert check_url("http://[::1]:8080/", LISTED).host_header == "[::1]:8080"
    assert check_url("https://example.com:443/", LISTED).host_header == "example.com"


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fe80::1", "::ffff:192.168.0.1",
     "0.0.0.0", "100.100.1.1", "ff02::1", "64:ff9b::7f00:1"],
)  # fmt: skip
def test_resolved_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_signatures_verify_with_the_standard_webhooks_library(secret: str) -> None:
    body = '{"id":"j1","status":"succeeded","text":"naïve \u2028 ok"}'.encode()
    headers = Signer.from_secret(secret).headers("msg_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers)["status"] == "succeeded"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_2"})


def test_while_rotating_each_request_carries_a_signature_per_secret(secret: str) -> None:
    old = "whsec_" + base64.b64encode(b"o" * 32).decode()
    body = b'{"id":"j1"}'
    headers = Signer.from_secret(f"{secret} {old}").headers("msg_1", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for key in (secret, old):
        assert Webhook(key).verify(body, headers) == {"id": "j1"}


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("sk_notwhsec", "starts with whsec_"),
        ("whsec_***", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
        ("whsec_CHANGE-ME", "placeholder"),
    ],
)
def test_settings_refuse_a_secret_that_cannot_sign(value: str, phrase: str) -> None:
    with pytest.raises(ValidationError, match=phrase):
        Settings(webhook_secret=value)


def test_settings_refuse_a_tenant_default_the_policy_refuses(secret: str) -> None:
    with pytest.raises(ValidationError, match=r"TENANT_URLS\[acme\].*private"):
        Settings(webhook_secret=secret, webhook_tenant_urls={"acme": "https://10.0.0.1/h"})
    with pytest.raises(ValidationError, match="needs AIJOBS_WEBHOOK_SECRET"):
        Settings(webhook_tenant_urls={"acme": "https://example.com/h"})
    listed = Settings(
        webhook_secret=secret,
        webhook_allowed_hosts="10.0.0.1, hooks.example",
        webhook_tenant_urls={"acme": "http://10.0.0.1/h"},
    )
    assert listed.webhook_allowed_hosts == ["10.0.0.1", "hooks.example"]


def test_unpadded_secrets_are_read_as_the_libraries_read_them() -> None:
    key = b"k" * 32
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert parse_secrets(unpadded) == [key]
