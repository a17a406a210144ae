"""The event wire formats."""

from __future__ import annotations

import pytest

from aijobs.events.protocol import Event, live_message, parse_live_message


def test_live_message_round_trip_keeps_data_verbatim() -> None:
    data = '{"text":"a \\"quoted\\" }","attempt":2}'
    message = live_message(17, "delta", 2, data)
    assert message == '{"id":17,"event":"delta","attempt":2,"data":' + data + "}"
    assert parse_live_message(message) == Event(17, "delta", data, 2)
    assert Event(17, "delta", data).json() == {
        "id": 17, "event": "delta", "data": {"text": 'a "quoted" }', "attempt": 2}
    }  # fmt: skip
    with pytest.raises(ValueError):
        parse_live_message("hello")
