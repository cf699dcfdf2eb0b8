"""JSON text as a client may write it: duplicate keys, integers of any size.

A generated object is a tree of `Pairs` (an object as the pairs written, in
order, duplicates kept), lists and scalars; `render` writes it as JSON text and
`read` reads text back into such a tree, so sent and forwarded objects can be
compared exactly: keys, their order and the type of every number.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from shared.verbatim import MAX_INT, MIN_INT


class Pairs(list[tuple[str, Any]]):
    """A JSON object as the pairs written, duplicates kept."""


def render(tree: Any, escape_colons: bool = False) -> str:
    """`tree` as JSON text; with `escape_colons`, every `:` in a string written `\\u003a`."""

    def string(text: str) -> str:
        written = json.dumps(text)
        return written.replace(":", "\\u003a") if escape_colons else written

    def value(tree: Any) -> str:
        if isinstance(tree, Pairs):
            return "{" + ", ".join(f"{string(k)}: {value(v)}" for k, v in tree) + "}"
        if isinstance(tree, list):
            return "[" + ", ".join(value(item) for item in tree) + "]"
        return string(tree) if isinstance(tree, str) else json.dumps(tree)

    return value(tree)


def read(data: bytes | str) -> Any:
    return json.loads(data, object_pairs_hook=Pairs)


def problem(tree: Any) -> str | None:
    """What makes `tree` impossible to carry unchanged, if anything."""
    if isinstance(tree, Pairs):
        keys = [key for key, _ in tree]
        if len(set(keys)) != len(keys):
            return "duplicate key"
        items = [value for _, value in tree]
    elif isinstance(tree, list):
        items = tree
    elif type(tree) is int and not MIN_INT <= tree <= MAX_INT:
        return "integer larger than 64 bits"
    else:
        return None
    return next((found for item in items if (found := problem(item))), None)


def plain(tree: Any) -> Any:
    """The tree as Python values, as a JSON reader without pairs would give it."""
    if isinstance(tree, Pairs):
        return {key: plain(value) for key, value in tree}
    if isinstance(tree, list):
        return [plain(item) for item in tree]
    return tree


# Few key names, so duplicates are common; integers around both 64-bit edges.
keys = st.sampled_from(["a", "b", "nonce", "a:b"]) | st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6
)
edges = st.sampled_from([MIN_INT - 1, MIN_INT, 2**63 - 1, 2**63, MAX_INT, MAX_INT + 1])
integers = edges | st.integers(min_value=-(2**70), max_value=2**70) | st.integers(-9, 9)
scalars = (
    st.none()
    | st.booleans()
    | integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8)
    # Colons in strings: what the verbatim check counts apart from the keys' colons.
    | st.sampled_from([":", "a:b", "::", "12:00:01"])
)
trees = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.lists(st.tuples(keys, inner), max_size=4).map(Pairs)
    ),
    max_leaves=20,
)
objects = st.lists(st.tuples(keys, trees), max_size=6).map(Pairs)
