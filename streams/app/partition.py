"""What the account stage keeps per by-account partition it owns (`streams.app.accounts`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.app.align import Aligned
from streams.app.watermark import StreamClock
from streams.events.types import Event
from streams.scoring.timers import ExpiryIndex

# A held event: (account, "input partition:path", position, the event).
Held = tuple[str, str, int, Event]


@dataclass
class PartitionWork:
    part: int
    clock: StreamClock  # stream time, from the marks read in this partition
    dirty: set[str] = field(default_factory=set)
    timers: ExpiryIndex = field(default_factory=ExpiryIndex)
    version: int = 0  # the model version this partition runs (`streams.app.lifecycle.versions`)
    shadows: set[int] = field(default_factory=set)  # the shadow versions started here
    frozen: int | None = None  # stream time frozen here while a switch is agreed
    reported: str = ""  # the announced switch this partition reported for
    max_clock: int | None = None  # the latest account clock restored (none: no state)
    # Held events and the records to ack (in order, once nothing of theirs is held).
    align: Aligned[Held] = field(init=False)

    def __post_init__(self) -> None:
        self.align = Aligned(self.clock)
