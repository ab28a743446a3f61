"""File names made from data: an id never becomes a path by itself.

An event id names its brief (``store/briefs/<key>.json``, ``reports/event-brief/<key>/``); a
period label names its signals. Such a name is *slugged* (:func:`file_key`: ASCII letters,
digits, ``.``, ``_`` and ``-``; never a leading dot; at most :data:`MAX_KEY` characters) and
*placed* (:func:`inside`: the resolved path stays under its folder). A text that cannot give a
usable name (empty, over-long, only dots) is refused with a message naming it, never truncated
or hidden: two different ids must never share a file.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from features.errors import InputError

#: the longest file key: far below the 255 bytes most file systems allow, room for suffixes
MAX_KEY = 128

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _shown(text: str, limit: int = 60) -> str:
    """``text`` as a message shows it: repr, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def file_key(text: str, *, what: str = "id") -> str:
    """The file name of ``text`` (an id or a label): accents dropped, every run of characters
    other than ASCII letters, digits, ``.``, ``_`` and ``-`` replaced by ``-``.

    Parameters
    ----------
    text
        The id as the data holds it.
    what
        What the text is (``"event id"``), for the message.

    Raises
    ------
    InputError
        When the text is longer than :data:`MAX_KEY` characters, or gives no usable name (empty,
        or starting with a dot: a hidden file, ``..``).

    Examples
    --------
    >>> file_key("Fête de la musique 2026")
    'Fete-de-la-musique-2026'
    >>> file_key("a/b"), file_key("a?b")
    ('a-b', 'a-b')
    >>> file_key("東京")
    'u-130016b2599bf7e5'
    """
    raw = str(text)
    if len(raw) > MAX_KEY:
        raise InputError(
            f"{what} {_shown(raw)} is {len(raw)} characters long; at most {MAX_KEY} make a file "
            "name: give a shorter id."
        )
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    key = _UNSAFE.sub("-", ascii_text).strip("-")
    if not key and any(ch.isalnum() for ch in raw):
        # letters of a script without an ASCII form (日本): a name from the text's hash
        key = "u-" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    if len(key) > MAX_KEY:  # a character that NFKD spreads into many ("ﷺ" makes 18)
        raise InputError(
            f"{what} {_shown(raw)} makes a file name of {len(key)} characters; at most "
            f"{MAX_KEY}: give a shorter id."
        )
    if not _KEY.fullmatch(key):
        why = (
            "starts with a dot (a hidden file)" if key.startswith(".") else "has no letter or digit"
        )
        raise InputError(
            f"{what} {_shown(raw)} cannot name a file: its name {key!r} {why}; give an id that "
            "starts with a letter or a digit."
        )
    return key


def inside(folder: str | Path, name: str) -> Path:
    """``folder / name``, checked to stay under ``folder`` once resolved (no ``..``, no absolute
    path, no link out).

    Raises
    ------
    InputError
        When ``name`` would leave ``folder``, or holds a NUL byte.
    """
    if "\x00" in name or not name or Path(name).is_absolute() or "\\" in name:
        raise InputError(f"{_shown(name)} is not a usable file name under {folder}.")
    base = Path(folder).resolve()
    path = (base / name).resolve()
    if path == base or not path.is_relative_to(base):
        raise InputError(f"{_shown(name)} leads out of {folder}; refused.")
    return Path(folder) / name


def distinct_keys(ids: list[str], *, what: str = "id") -> dict[str, str]:
    """``{id: file_key(id)}`` for distinct ids, refusing two ids that share a file name.

    Raises
    ------
    InputError
        Naming both ids and the name they share, or an id that cannot name a file.
    """
    seen: dict[str, str] = {}
    out: dict[str, str] = {}
    for i in dict.fromkeys(str(v) for v in ids):
        key = file_key(i, what=what)
        other = seen.get(key.lower())
        if other is not None:
            raise InputError(
                f"{what}s {_shown(other)} and {_shown(i)} both make the file name {key!r}; "
                "one would overwrite the other: rename one of them."
            )
        seen[key.lower()] = i
        out[i] = key
    return out
