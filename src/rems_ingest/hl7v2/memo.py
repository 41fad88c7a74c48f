"""Bounded memos for pure readings of short field text (units, timestamps, labels).

A feed repeats a handful of spellings, so remembering them saves work on every OBX. Only short
text is remembered: a cache keyed by whatever a sender puts in a field would otherwise pin up
to ``maxsize`` oversized fields (each up to a frame, 1 MiB by default) in memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

MAX_TEXT = 256  # longer than any unit, timestamp or code label a lab sends

R = TypeVar("R")


def remember_short(maxsize: int) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Memoise ``fn(text, *args)`` (pure, immutable result) for ``len(text) <= MAX_TEXT``."""

    def wrap(fn: Callable[..., R]) -> Callable[..., R]:
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def call(text: str, *args: Any) -> R:
            return cached(text, *args) if len(text) <= MAX_TEXT else fn(text, *args)

        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return call

    return wrap
