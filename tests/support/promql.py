"""The metric and label names a PromQL expression refers to, and a check against an exposition.

Not a PromQL parser: a tokenizer that knows enough of the grammar to tell
names apart. Strings, durations, numbers and Grafana variables are dropped;
an identifier followed by `(` is a function (or an aggregation); keywords and
aggregation operators are skipped; every other identifier is a metric name.
Label names are read inside `{...}` (left of a matcher, tied to the metric
before the brace) and inside the parentheses after `by`, `without`, `on`,
`ignoring`, `group_left` and `group_right` (tied to the whole expression).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "inf",
        "nan",
        "atan2",
        # aggregation operators, also written `sum by (x) (...)`
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "limitk",
        "limit_ratio",
    }
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
# Labels Prometheus adds to every scraped series, and the `le` of histogram buckets is exported.
TARGET_LABELS = frozenset({"job", "instance"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_RANGE = re.compile(r"\[[^\]]*\]")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_COMMENT = re.compile(r"#[^\n]*")
_NUMBER = re.compile(r"(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)(?:[a-zA-Z]+\d*)*")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


@dataclass
class References:
    """Names one expression uses."""

    metrics: set[str] = field(default_factory=set)
    # label names inside a metric's {...}, by metric
    selector_labels: dict[str, set[str]] = field(default_factory=dict)
    # label names of by(...), on(...) etc., and of templates: any metric of the expression
    grouping_labels: set[str] = field(default_factory=set)


def references(expr: str) -> References:
    found = References()
    text = _COMMENT.sub(" ", _STRING.sub('""', expr))
    text = _GRAFANA_VARIABLE.sub(" ", _RANGE.sub(" ", text))
    position, last_metric = 0, None
    while position < len(text):
        char = text[position]
        if char.isspace():
            position += 1
            continue
        if char in '+-*/%^=!<>,()"':
            position, last_metric = position + 1, None
            continue
        if char == "{":
            end = text.index("}", position)
            labels = set(_MATCHER_LABEL.findall(text[position + 1 : end]))
            owner = last_metric if last_metric is not None else ""
            found.selector_labels.setdefault(owner, set()).update(labels)
            position, last_metric = end + 1, None
            continue
        number = _NUMBER.match(text, position)
        if char.isdigit() and number:
            position, last_metric = number.end(), None
            continue
        identifier = _IDENTIFIER.match(text, position)
        if identifier is None:
            raise ValueError(f"unexpected {char!r} at {position} in {expr!r}")
        name, position = identifier.group(), identifier.end()
        rest = text[position:].lstrip()
        last_metric = None
        if name in GROUPING:
            if rest.startswith("("):
                start = text.index("(", position)
                end = text.index(")", start)
                found.grouping_labels.update(_IDENTIFIER.findall(text[start + 1 : end]))
                position = end + 1
        elif name in KEYWORDS or rest.startswith("("):
            continue  # an operator, a keyword or a function
        else:
            found.metrics.add(name)
            last_metric = name
    return found


def template_labels(text: str) -> set[str]:
    """Label names an alert's summary or description interpolates (`$labels.x`)."""
    return set(re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text))


def label_values_query(query: str) -> tuple[str, str] | None:
    """A Grafana `label_values(selector, label)` variable query, as (selector, label)."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", query)
    return (match.group(1), match.group(2)) if match else None


def unknown_names(
    where: str,
    refs: References,
    exported: Mapping[str, set[str]],
    extra_labels: Iterable[str] = (),
) -> list[str]:
    """What `refs` names that `exported` (metric name to its label names) does not have."""
    problems = []
    for metric in sorted(refs.metrics):
        if metric not in exported:
            problems.append(f"{where}: unknown metric {metric}")
    for metric, labels in sorted(refs.selector_labels.items()):
        known = exported.get(metric, set()) if metric else _all_labels(refs, exported)
        for label in sorted(labels - known - TARGET_LABELS - {"__name__"}):
            if metric in exported or not metric:
                problems.append(f"{where}: unknown label {label} of {metric or 'a selector'}")
    available = _all_labels(refs, exported) | TARGET_LABELS
    for label in sorted((refs.grouping_labels | set(extra_labels)) - available):
        problems.append(f"{where}: unknown label {label} (no metric of the expression has it)")
    return problems


def _all_labels(refs: References, exported: Mapping[str, set[str]]) -> set[str]:
    return set().union(*(exported.get(metric, set()) for metric in refs.metrics))
