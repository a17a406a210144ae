"""The price table (``AIJOBS_PRICES``) and what a number of tokens costs under it."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

#: Prices are per this many tokens, as providers publish them.
PER_TOKENS = 1_000_000


class Price(BaseModel):
    """USD per 1M tokens of one model: prompt (``input``), completion (``output``), and
    prompt tokens the provider served from its cache (``cached_input``; default: the
    ``input`` price)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(default=0.0, ge=0)
    cached_input: float | None = Field(default=None, ge=0)


def price_for(prices: Mapping[str, Price], model: str) -> Price | None:
    """The model's price, else the ``*`` entry's, else None (no cost is recorded)."""
    return prices.get(model) or prices.get("*")


def cost_usd(price: Price | None, *, prompt: int, completion: int, cached: int) -> float | None:
    """What the tokens cost (cached tokens are part of ``prompt``); None without a price."""
    if price is None:
        return None
    cached = min(max(cached, 0), prompt)
    cached_price = price.input if price.cached_input is None else price.cached_input
    micro = (prompt - cached) * price.input + cached * cached_price + completion * price.output
    # Rounded to a millionth of a cent: float sums of many jobs stay readable.
    return round(micro / PER_TOKENS, 8)
