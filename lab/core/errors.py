"""Errors that cross layers: what a venue answered that the user has to act on."""
from __future__ import annotations


class VenueError(RuntimeError):
    """The venue answered with an error the user has to act on (unknown symbol, bad URL, ...)."""


class UnknownVenue(ValueError):
    """A venue name the registry does not know."""
