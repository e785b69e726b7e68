"""What the fan-out knows of one subscriber: its symbols, their phases, its group (pure data).

:class:`~.conflation.Fanout` moves these states between the phases; the I/O
layer sets the flags it owns (``blocked``, ``catch_up``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Phase", "Subscriber", "SubscriberGroup", "SymbolState"]


class Phase:
    """Where a subscriber's symbol is in its cycle (plain ints: this is the hot path)."""

    ARMED = 0
    """May send at once: the next tick makes it ready (it sits in the book's armed set)."""
    READY = 1
    """Goes out in the next frame (the symbol is in the subscriber's ``ready``)."""
    WAITING = 2
    """Sent in the current window; waits on the wheel for the boundary ``due``."""
    RIDING = 3
    """Idle: the subscriber rides a group, whose state stands for its own."""


@dataclass(eq=False, slots=True)
class SymbolState:
    """What one subscriber holds of one symbol."""

    window: int
    """Microseconds per window (1 / granted rate); 0 for unthrottled."""
    last_seq: int
    last_volume: int
    phase: int = Phase.ARMED
    sent: int = -1
    """Microsecond time of the last update sent (-1: none yet)."""
    due: int = 0
    """While WAITING: the boundary (microseconds) it waits for."""

    def in_step_with(self, other: SymbolState) -> bool:
        """True when both will receive the same updates from now on."""
        return (
            self.window == other.window
            and self.last_seq == other.last_seq
            and self.phase == other.phase
            and (self.phase != Phase.WAITING or self.due == other.due)
        )


@dataclass(eq=False, slots=True)
class Subscriber:
    """One client's subscriptions and what is waiting to go out to it."""

    name: str = ""
    symbols: dict[str, SymbolState] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)
    """Symbols whose update goes out in the next frame."""
    blocked: bool = False
    """Set by the I/O layer while the client's socket is above its high-water mark."""
    catch_up: bool = False
    """Set by the I/O layer when the socket drained: the next frame may merge what piled up.
    Only then: a flush that is merely late (a busy server) still sends every window exactly."""
    closed: bool = False
    group: SubscriberGroup | None = None
    """The group this subscriber currently rides with; its own states are idle meanwhile."""


@dataclass(eq=False, slots=True)
class SubscriberGroup(Subscriber):
    """Subscribers of the same symbols and window, in step: one cursor, one frame for all.

    The fan-out visits the group once per tick and builds its frame once; the
    I/O layer writes that frame to each member. A member that falls behind (its
    socket fills up) or changes its subscription leaves with the group's
    position and carries on alone until it is in step again.
    """

    members: set[Subscriber] = field(default_factory=set)
