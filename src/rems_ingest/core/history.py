"""A patient's event history: corrections replace, deletions remove, repeats change nothing."""

from __future__ import annotations

from collections.abc import Sequence

from rems_ingest.core.model import AncResult, Event, ResultStatus, event_sort_key


def merge(history: Sequence[Event], event: Event) -> tuple[list[Event], bool]:
    """Return (new history, changed). Results are keyed by their result key.

    - the same event again: unchanged (idempotent resend);
    - C/F/P with a known key: replaces the stored value (a correction re-runs the rules);
    - D/W with a known key: removes it (wrong patient / deleted);
    - D/W with an unknown key: nothing to remove.
    """
    keyed = {e.key: i for i, e in enumerate(history)}
    i = keyed.get(event.key)
    if i is not None and history[i] == event:
        return list(history), False
    out = list(history)
    if isinstance(event, AncResult) and event.status in (ResultStatus.DELETED, ResultStatus.WRONG):
        if i is None:
            return out, False
        del out[i]
        return out, True
    if isinstance(event, AncResult) and event.status is ResultStatus.CANNOT_OBTAIN:
        return out, False
    if i is not None:
        out[i] = event
    else:
        out.append(event)
    return out, True


def is_append(history: Sequence[Event], event: Event) -> bool:
    """True when ``event`` is new and sorts after everything stored: the cheap incremental path."""
    if any(e.key == event.key for e in history):
        return False
    return not history or event_sort_key(event) >= max(event_sort_key(e) for e in history)
