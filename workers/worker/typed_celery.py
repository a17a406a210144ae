"""Celery's decorators, typed. Celery ships no types (to mypy its names are Any), so this
is the one place that says what its decorators do to a function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task

_Receiver = TypeVar("_Receiver", bound=Callable[..., None])


def receiver(signal: Any) -> Callable[[_Receiver], _Receiver]:
    """``@signal.connect``: connects the function to the signal and returns it as it is."""
    connect: Callable[[_Receiver], _Receiver] = signal.connect
    return connect


def celery_task(**options: Any) -> Callable[[Callable[..., None]], Any]:
    """``@shared_task(**options)``: the function becomes a Celery task (a ``Task``)."""
    decorator: Callable[[Callable[..., None]], Any] = shared_task(**options)
    return decorator
