"""Unit tests of the chaos pieces: config section, draws, odd text, keys and the log bound."""

from __future__ import annotations

from collections import Counter

import pytest

from aijobs.devtools.simulator import (
    ChaosConfig,
    SimulatorConfig,
    request_key_for_inputs,
    request_key_for_messages,
    request_key_for_text,
)
from aijobs.devtools.simulator import text as txt
from aijobs.devtools.simulator.chaos import ChaosDice
from aijobs.devtools.simulator.request_log import RequestLog


def test_chaos_section_parsing_and_validation() -> None:
    config = SimulatorConfig.from_mapping({"chaos": {"seed": "7", "cut": "0.5"}})
    assert config.chaos == ChaosConfig(seed=7, cut=0.5)
    assert config.chaos.enabled and not SimulatorConfig().chaos.enabled
    assert SimulatorConfig.from_mapping(config.as_dict()) == config  # round-trips
    assert SimulatorConfig(chaos={"stall": 0.1}).chaos.stall == 0.1  # type: ignore[arg-type]
    assert SimulatorConfig.from_mapping({"chaos": None}, base=config).chaos == ChaosConfig()
    for bad, message in [
        ({"odd_text": -0.1}, "odd_text"),
        ({"rate_limit": 0.5, "server_error": 0.3, "cut": 0.3}, "<= 1"),
        ({"retry_after_min_s": 2, "retry_after_max_s": 1}, "retry_after"),
        ({"trickle_min_s": 0}, "trickle"),
        ({"stall_keepalive_s": 0}, "stall_keepalive_s"),
        ({"stall_after_max_chunks": 1.5}, "integer"),
        ({"by_key": "yes"}, "by_key"),
        ({"nope": 1}, "nope"),
    ]:
        with pytest.raises(ValueError, match=message):
            SimulatorConfig.from_mapping({"chaos": bad})
    # odd_text is independent of the fault kinds: 1.0 with other kinds is fine.
    assert ChaosConfig(odd_text=1.0, cut=1.0).enabled


def test_chaos_from_env() -> None:
    env = {"AIJOBS_SIM_CHAOS": '{"seed": 3, "trickle": 0.25}', "AIJOBS_SIM_RPM_LIMIT": "5"}
    config = SimulatorConfig.from_env(env)
    assert (config.chaos.seed, config.chaos.trickle, config.rpm_limit) == (3, 0.25, 5)
    with pytest.raises(ValueError, match="AIJOBS_SIM_CHAOS is not valid JSON"):
        SimulatorConfig.from_env({"AIJOBS_SIM_CHAOS": "{seed"})
    with pytest.raises(ValueError, match="invalid simulator environment"):
        SimulatorConfig.from_env({"AIJOBS_SIM_CHAOS": '{"cut": 3}'})


def _kinds(dice: ChaosDice, keys: list[str]) -> list[str | None]:
    draws = [dice.roll(key) for key in keys]
    return [d.kind if d is not None else "off" for d in draws]


def test_dice_repeat_per_seed_and_follow_the_probabilities() -> None:
    config = ChaosConfig(seed=7, rate_limit=0.1, server_error=0.2, cut=0.3, odd_text=0.5)
    first = _kinds(ChaosDice(config), [""] * 10_000)
    assert _kinds(ChaosDice(config), [""] * 10_000) == first
    assert _kinds(ChaosDice(ChaosConfig(seed=8, cut=0.3)), [""] * 50) != first[:50]
    counts = Counter(first)
    for kind, p in (("rate_limit", 0.1), ("server_error", 0.2), ("cut", 0.3), (None, 0.4)):
        assert abs(counts[kind] / 10_000 - p) < 0.02, kind
    assert ChaosDice(ChaosConfig()).roll("") is None  # off


def test_dice_by_key_ignore_interleaving() -> None:
    config = ChaosConfig(seed=1, by_key=True, rate_limit=0.3, cut=0.3, odd_text=0.5)
    keys = ["a", "b", "c"] * 20

    def per_key(order: list[str]) -> dict[str, list[object]]:
        dice = ChaosDice(config)
        out: dict[str, list[object]] = {}
        for key in order:
            out.setdefault(key, []).append(dice.roll(key))
        return out

    assert per_key(keys) == per_key(sorted(keys))


def test_draw_parameters_stay_in_bounds() -> None:
    config = ChaosConfig(
        rate_limit=0.2,
        cut=0.2,
        trickle=0.2,
        stall=0.2,
        retry_after_min_s=0.1,
        retry_after_max_s=0.4,
        trickle_min_s=0.5,
        trickle_max_s=0.7,
        stall_after_max_chunks=2,
        stall_keepalive_s=0.3,
    )
    dice = ChaosDice(config)
    for _ in range(2_000):
        d = dice.roll("")
        assert d is not None
        assert 0.1 <= d.retry_after_s <= 0.4
        assert d.status in (500, 502, 503)
        if d.kind == "trickle":
            assert 0.5 <= d.interval_s <= 0.7
        if d.kind == "stall":
            assert d.interval_s == 0.3 and 0 <= d.stall_after <= 2
        fault = d.as_fault(10)
        if d.kind == "cut":
            assert fault is not None and 0 <= fault.after_chunks <= 10
        assert (fault is None) == (d.kind not in ("cut", "trickle", "stall"))


@pytest.mark.parametrize("count", [1, 2, 3, 8, 64])
def test_odd_tokens(count: int) -> None:
    tokens = txt.odd_tokens(42, count)
    assert tokens == txt.odd_tokens(42, count)
    assert tokens != txt.odd_tokens(43, count) or count == 1
    assert len(tokens) == count
    assert all(t.startswith(" ") for t in tokens[1:]) and not tokens[0].startswith(" ")
    text = "".join(tokens)
    if count >= 3:
        assert all(c in text for c in txt.LINE_BREAKERS)
    if count >= 8:
        for group in txt.ODD_WORD_GROUPS:
            assert any(word in text for word in group)
        assert any(ord(c) > 0xFFFF for c in text)


def test_request_keys() -> None:
    document = "Invoice 42 from ACME"
    key = request_key_for_text(document)
    assert len(key) == 12 and key == request_key_for_text(document)
    assert (
        request_key_for_messages(
            [{"role": "system", "content": "x"}, {"role": "user", "content": document}]
        )
        == key
    )
    assert request_key_for_messages([{"role": "user", "content": [{"text": document}]}]) == key
    assert request_key_for_messages([{"role": "system", "content": "x"}]) == request_key_for_text(
        ""
    )
    assert request_key_for_inputs(document) == request_key_for_inputs([document, "b"]) == key
    assert request_key_for_inputs([1, 2]) == request_key_for_inputs([[1, 2], [3]]) != key
    assert request_key_for_inputs([]) == request_key_for_text("")
    assert request_key_for_text("\ud800") != request_key_for_text("")  # lone surrogates: no error


def test_request_log_is_a_ring_buffer() -> None:
    log = RequestLog(maxlen=3)
    records = [log.open("chat", f"k{i % 2}", "m", False, float(i)) for i in range(5)]
    assert (log.total, len(log)) == (5, 3)
    assert [r["seq"] for r in log.entries()] == [3, 4, 5]
    assert [r["seq"] for r in log.entries(key="k0")] == [3, 5]
    assert [r["seq"] for r in log.entries(since=4)] == [5]
    record = records[-1]
    record.finish("completed", 200)
    record.finish("dropped")
    assert (record.end, record.status) == ("completed", 200)  # the first end wins
    assert log.entries(since=4)[0]["end"] == "completed"
