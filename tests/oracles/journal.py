"""Reference encoder of one journal record (`lab.datasets.journal.encode` runs the Rust one)."""

from __future__ import annotations

import zlib

from lab.datasets.journal import _FIXED, _FRAME, _NULL, _U16, KIND_CODE, RawRow


def encode_py(row: RawRow) -> bytes:
    """Reference implementation of `encode`: the record layout of journal.py's docstring."""
    channel = row.channel.encode()
    if row.symbol is None:
        sym, sym_len = b"", _NULL
    else:
        sym = row.symbol.encode()
        sym_len = len(sym)
    body = b"".join(
        (
            _FIXED.pack(row.rec_id, row.local_ts, row.conn_id, row.conn_seq, KIND_CODE[row.kind], len(channel)),
            channel,
            _U16.pack(sym_len),
            sym,
            row.payload,
        )
    )
    return _FRAME.pack(len(body), zlib.crc32(body)) + body
