"""The one home of the symbols the dashboard watches (pure: no Qt, no I/O).

The client's session, the store, the watchlist model and the window all read this
object and follow its changes instead of keeping lists of their own, so they cannot
disagree about what is watched. Whoever edits it (the user through the window, the
session when the server refuses a symbol) edits it here and everyone hears of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, KeysView
from dataclasses import dataclass

__all__ = ["WatchChange", "WatchedSymbols", "normalise"]


def normalise(symbols: Iterable[str]) -> list[str]:
    """Symbols as the protocol spells them: trimmed, upper case, blanks left out."""
    return [s.strip().upper() for s in symbols if s.strip()]


@dataclass(frozen=True, slots=True)
class WatchChange:
    """One edit of the watched set: what came, what went, and the whole set after it."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    symbols: tuple[str, ...]


WatchListener = Callable[[WatchChange], None]


class WatchedSymbols:
    """An insertion-ordered set of symbols that tells its listeners of every change.

    Listeners are called in the order they were added, so a reader that others
    depend on (the store, which must hold a symbol before a view shows its row)
    registers first.

    Args:
        symbols: the symbols watched from the start.
    """

    def __init__(self, symbols: Iterable[str] = ()) -> None:
        self._symbols: dict[str, None] = dict.fromkeys(normalise(symbols))
        self._listeners: list[WatchListener] = []

    @property
    def symbols(self) -> list[str]:
        """The watched symbols, in the order they were added."""
        return list(self._symbols)

    def view(self) -> KeysView[str]:
        """A live, read-only view of the set: membership tests at C speed, for per-tick paths."""
        return self._symbols.keys()

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._symbols

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._symbols))

    def __len__(self) -> int:
        return len(self._symbols)

    def add_listener(self, listener: WatchListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: WatchListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def add(self, symbols: Iterable[str]) -> list[str]:
        """Watch ``symbols`` too; returns those that were not watched yet."""
        new = [s for s in dict.fromkeys(normalise(symbols)) if s not in self._symbols]
        for symbol in new:
            self._symbols[symbol] = None
        if new:
            self._changed(tuple(new), ())
        return new

    def remove(self, symbols: Iterable[str]) -> list[str]:
        """Stop watching ``symbols``; returns those that were watched."""
        gone = [s for s in dict.fromkeys(normalise(symbols)) if s in self._symbols]
        for symbol in gone:
            del self._symbols[symbol]
        if gone:
            self._changed((), tuple(gone))
        return gone

    def _changed(self, added: tuple[str, ...], removed: tuple[str, ...]) -> None:
        change = WatchChange(added, removed, tuple(self._symbols))
        for listener in list(self._listeners):
            listener(change)
