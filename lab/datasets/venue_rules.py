"""What the dataset layer needs to know of a venue, and how it gets to know it.

Re-deriving a session (`lab normalize`, recovery), checking trade ids and checksums (`lab verify`)
and ordering sessions in replay need a venue's rules: its normalizer, whether its trade ids count
up, how its checksum is recomputed from a book, where it counts sequences. The dataset layer sits
below the venues (docs/ARCHITECTURE.md, "Layers"), so it declares here what it asks (`DatasetRules`,
which the venue contract `lab.venues.contract.Venue` extends) and is handed the rules by the one
registry: `lab/__init__.py` installs `lab.venues.registry.rules` as the provider when lab is
imported, and tests or embedders may pass their own.
"""
from __future__ import annotations

from typing import Callable

from lab.core.errors import UnknownVenue


class DatasetRules:
    """The part of a venue adapter the dataset layer reads."""

    name: str
    # "symbol" / "connection": `seq` is the venue's own (comparable across sessions);
    # "counter": lab's per-connection count of applied messages
    sequence_scope: str = "symbol"

    def normalizer(self, **kwargs):
        raise NotImplementedError

    def trade_ids_sequential(self, symbol: str, ids: list[str]) -> bool:
        """Whether trade ids count up by one (so a hole between two is trades lost)."""
        return False

    def checksum_function(self, book, files: list[str]) -> Callable[[int], int] | None:
        """checksum(row index) of `book` as applied up to that row of the book `files`, as the
        venue computes it, or None when the venue sends no checksum."""
        return None

    @property
    def seq_is_venue_sequence(self) -> bool:
        return self.sequence_scope != "counter"


_provider: Callable[[str], DatasetRules] | None = None


def install(provider: Callable[[str], DatasetRules]) -> None:
    """Set the function that maps a venue name to its rules (raising UnknownVenue)."""
    global _provider
    _provider = provider


def rules(venue: str) -> DatasetRules:
    """The rules of `venue`; UnknownVenue when no provider knows it."""
    if _provider is None:
        raise UnknownVenue(f"unknown venue {venue!r}: no venue registry installed (import lab)")
    return _provider(venue)
