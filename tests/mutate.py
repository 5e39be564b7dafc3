"""Byte-level mutations of valid frames for the parsers' fuzz tests (imported by test modules)."""
from __future__ import annotations

import random


def mutations(frames: list[bytes], count: int, seed: int):
    """`count` mutants of the given frames, seeded: 1 to 4 edits each, a truncation (30 %) or a
    flipped byte."""
    rng = random.Random(seed)
    for _ in range(count):
        f = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(f))
            if rng.random() < 0.3:
                del f[k:]
                if not f:
                    break
            else:
                f[k] = rng.randrange(256)
        yield bytes(f)
