"""Values computed once per immutable object and kept while the object lives.

A conversation grows by a message a turn, and every turn the kernel sizes it and a backend turns it
into its provider's wire format.  Messages (:class:`rlm.types.Message`) are frozen attrs values, so what
is derived from one never changes: :class:`IdentityMemo` computes it once per message object.  A message
that changes is a new object (compaction replaces an old tool message by a shorter one), so a memo
keyed by identity never serves a stale value; an entry goes when its object is garbage-collected
(a weak reference's callback), so the memo does not keep messages alive (but for the few recent
conversations :meth:`IdentityMemo.get_many` remembers) nor mixes up a reused ``id``.  ``compute`` must
be a function of the object's value (equal objects, equal values): it is for frozen attrs values.

Values are shared between the callers that ask for the same object: a caller must not mutate one
(a wire dict handed to an SDK is read, never changed, by the SDKs rlm uses; copy it otherwise).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
V = TypeVar("V")

#: how many sequences :meth:`IdentityMemo.get_many` remembers (concurrent conversations each keep theirs)
RECENT = 8


class IdentityMemo(Generic[T, V]):
    """``get(obj, compute)``: ``compute(obj)``, computed once per live object (by identity).

    Objects that cannot be weakly referenced are computed every time (never memoized).  Thread-safe
    in the sense that matters here: two threads may both compute a value, never see a wrong one.
    """

    __slots__ = ("_entries", "_recent", "_lock", "__weakref__")

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Any], V]] = {}
        #: the sequences :meth:`get_many` was last asked for, with their values (newest first)
        self._recent: list[tuple[list[T], list[V]]] = []
        self._lock = threading.Lock()

    def get(self, obj: T, compute: Callable[[T], V]) -> V:
        key = id(obj)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is obj:
            return entry[1]
        value = compute(obj)
        entries = self._entries

        def forget(ref: weakref.ref[Any], key: int = key) -> None:
            if entries.get(key, (None,))[0] is ref:  # not an entry of a newer object at the same address
                del entries[key]

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:  # not weakly referenceable: not memoized
            return value
        entries[key] = (ref, value)
        return value

    def get_many(self, objs: Iterable[T], compute: Callable[[T], V]) -> list[V]:
        """``[self.get(o, compute) for o in objs]``, for a sequence that grows: a conversation's messages.

        The last :data:`RECENT` sequences asked for are remembered with their values; a sequence that
        starts with one of them (compared by identity first: a C-speed pass) reuses those values and
        looks up only the objects after it, so a turn costs its new messages.  (They hold their objects
        until newer sequences push them out.)"""
        items = list(objs)
        known: list[V] = []
        with self._lock:
            for index, (seen, values) in enumerate(self._recent):
                n = len(seen)
                if n <= len(items) and items[n - 1] is seen[-1] and items[:n] == seen:
                    known = values
                    del self._recent[index]
                    break
        out = list(known)
        entries = self._entries
        for obj in items[len(known):]:
            entry = entries.get(id(obj))
            out.append(entry[1] if entry is not None and entry[0]() is obj else self.get(obj, compute))
        if items:
            with self._lock:
                self._recent.insert(0, (items, list(out)))
                del self._recent[RECENT:]
        return out

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        with self._lock:
            self._recent.clear()


def memoize_by_identity(fn: Callable[[T], V]) -> Callable[[T], V]:
    """``fn`` of one immutable argument, memoized per argument object (:class:`IdentityMemo`).

    The wrapper has ``many(objs)`` (a list of values, :meth:`IdentityMemo.get_many`), ``memo`` (the
    :class:`IdentityMemo`) and ``uncached`` (``fn`` itself)."""
    memo: IdentityMemo[T, V] = IdentityMemo()

    @functools.wraps(fn)
    def wrapper(obj: T) -> V:
        return memo.get(obj, fn)

    wrapper.memo = memo  # type: ignore[attr-defined]
    wrapper.many = functools.partial(memo.get_many, compute=fn)  # type: ignore[attr-defined]
    wrapper.uncached = fn  # type: ignore[attr-defined]
    return wrapper
