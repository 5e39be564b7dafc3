"""The shared model every layer speaks (docs/ARCHITECTURE.md, "Layers"): instruments and their
precisions, trades, raw rows, book flags, the events that unsync a book, and the errors a venue
raises. It imports nothing of lab, so anything may import it."""
