"""Decoded JSON that is still what was sent, or the field where it is not.

orjson keeps integers in MIN_INT..MAX_INT exact and turns any other into a
float; of duplicate keys it keeps the last. Either would make the object we
store and forward differ from the one a node or worker sent, so such frames
are refused instead (docs/protocol.md). Postgres jsonb would collapse
duplicate keys too, so carrying them unchanged is not an option.

The raw text is only parsed a second time when the first result gives cause,
and a frame's size is bounded before it is read at all (`max_message_bytes`).
Each key is written with one `:` after it, and any other `:` of the text is
inside a string; a `:` in a decoded string was written as one, unless it was
escaped (`\\u003a`). So when the text has no such escape, its colons are one
per key written plus those of every string written; the decoded keys and the
colons of the decoded strings can only be fewer, by what a duplicate dropped:
equal counts prove there was none. An integer orjson could not hold shows up
as a float of magnitude 2**63 or more. Text with strings full of `:` is thus
read once, however large; only an escaped colon or a huge number (rare in
real frames) costs the second, slower reading.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# What orjson, our jsonb codec and orjson.dumps all carry exactly (i64 and u64).
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1
_SUSPECT = float(2**63)
# Longer integer literals are out of range for sure; int() of them only costs time.
_MAX_DIGITS = len(str(MIN_INT))


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as the pairs written, duplicates kept."""


def changed(data: bytes | str, value: Any) -> str | None:
    """Where `value` (orjson's reading of `data`) differs from `data`: `path: problem`."""
    return None if unchanged_for_sure(data, value) else _first_change(data)


def unchanged_for_sure(data: bytes | str, value: Any) -> bool:
    """Whether counting alone proves `value` is `data` as written (see the module's doc);
    False only means `data` must be read again to tell."""
    keys, colons, suspect = _census(value)
    return not suspect and _count_colons(data) == keys + colons and not _escaped_colon(data)


def _count_colons(data: bytes | str) -> int:
    return data.count(b":" if isinstance(data, bytes) else ":")


def _escaped_colon(data: bytes | str) -> bool:
    """Whether `data` may spell a `:` as an escape (a false alarm costs only time)."""
    if isinstance(data, bytes):
        return b"u003a" in data or b"u003A" in data
    return "u003a" in data or "u003A" in data


def _census(value: Any) -> tuple[int, int, bool]:
    """Keys in `value`, the `:` in its keys and strings, and whether it holds a float
    orjson may have made of an integer."""
    keys = colons = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            colons += item.count(":")
        elif kind is dict:
            keys += len(item)
            colons += "".join(item).count(":")
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float and abs(item) >= _SUSPECT:
            return keys, colons, True
    return keys, colons, False


def _integer(text: str) -> int:
    if len(text) <= _MAX_DIGITS:
        return int(text)
    return MIN_INT - 1 if text.startswith("-") else MAX_INT + 1


def _first_change(data: bytes | str) -> str | None:
    """Read `data` again keeping every pair and exact integers; name the first change."""
    try:
        tree = json.loads(data, object_pairs_hook=_Pairs, parse_int=_integer)
    except RecursionError:
        return "nested too deeply"
    except ValueError as error:  # orjson accepted it, so this should not happen
        return f"not valid JSON: {error}"
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), tree)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, _Pairs):
            seen: set[str] = set()
            for key, _ in item:
                if key in seen:
                    return _at(path, f"duplicate key {orjson.dumps(key).decode()}")
                seen.add(key)
            stack.extend(((*path, key), child) for key, child in reversed(item))
        elif isinstance(item, list):
            stack.extend(((*path, index), item[index]) for index in reversed(range(len(item))))
        elif type(item) is int and not MIN_INT <= item <= MAX_INT:
            return _at(path, "integer larger than 64 bits")
    return None


def _at(path: tuple[str | int, ...], problem: str) -> str:
    location = ".".join(str(part) for part in path)
    return f"{location}: {problem}" if location else problem
