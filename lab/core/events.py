"""Event kinds with a meaning beyond their row (docs/DATASET.md, `events`), and the requests a
normalizer makes of the live side."""
from __future__ import annotations

# Events after which a book is not in sync until its next snapshot (replay and rebuild stop
# trusting the book there).
UNSYNC_EVENTS = frozenset({"gap", "checksum_mismatch", "disconnect", "resync", "overflow"})

# Events written by recovery: records lost inside a journal, and a torn tail cut off.
DAMAGE_KIND = "journal_damage"
TORN_KIND = "journal_torn_tail"

# Events that explain lost trades between them: the connection or the stream was interrupted.
INTERRUPTION_EVENTS = frozenset({"connect", "disconnect", "gap", "resync", "overflow", "stall", "reconnect", "malformed",
                                 "ping_timeout", "connect_failed", DAMAGE_KIND, TORN_KIND})

# Requests a normalizer makes of the live side (ignored when re-deriving from raw).
REQUEST_SNAPSHOT = "snapshot"
REQUEST_RESUBSCRIBE = "resubscribe"
# A successor connection's stream now overlaps this symbol's book (make-before-break: the old
# connection may close); the argument is the symbol.
REQUEST_OVERLAP = "overlap"
# The venue announced it will close a connection (a `serverShutdown` event): replace it
# make-before-break; the argument is that connection's id, as text.
REQUEST_ROTATE = "rotate"
