"""Answers written piece by piece: a JSON document whose long list is streamed, or NDJSON.

A large answer (a zone's presence over a year, every zone's geometry) is never built whole:
the records come from a generator and each is encoded as it comes, so memory stays that of one
record (one month partition upstream, see :mod:`pipelines.api.data`). The JSON is strict
(no NaN; times as ISO text).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from features.jsonio import json_default

#: records gathered into one chunk of the HTTP body
CHUNK_RECORDS = 256


def encode(obj: Any) -> str:
    """Strict JSON text of ``obj`` (UTF-8 kept, no NaN)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=json_default)


def json_document(head: dict[str, Any], key: str, items: Iterable[Any]) -> Iterator[bytes]:
    """``{**head, key: [items...], "count": n}`` written as chunks of :data:`CHUNK_RECORDS`
    records."""
    opening = encode(head)[:-1]
    yield ((opening + ", " if head else "{") + encode(key) + ": [").encode()
    n = 0
    buf: list[str] = []
    for item in items:
        buf.append(("" if n == 0 else ", ") + encode(item))
        n += 1
        if len(buf) >= CHUNK_RECORDS:
            yield "".join(buf).encode()
            buf = []
    buf.append(f'], "count": {n}}}')
    yield "".join(buf).encode()


def ndjson(head: dict[str, Any], items: Iterable[Any]) -> Iterator[bytes]:
    """Newline-delimited JSON: the head on the first line, then one record per line."""
    buf = [encode(head)]
    for item in items:
        buf.append(encode(item))
        if len(buf) >= CHUNK_RECORDS:
            yield ("\n".join(buf) + "\n").encode()
            buf = []
    if buf:
        yield ("\n".join(buf) + "\n").encode()
