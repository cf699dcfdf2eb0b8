"""Every query of the dashboard document reads its big tables through an index.

Postgres is told to avoid sequential scans (`enable_seqscan = off`), so what
it plans is what the indexes allow, whatever the test database holds: a
table with no usable index is still scanned whole, and shows it.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from node_server import queries
from node_server.dashboard import BUSIEST_COUNT, BUSIEST_WINDOW_SECONDS, CHART_MINUTES
from shared.current_job import NEWEST_JOB
from shared.runtime.instances import STALE_AFTER_SECONDS

# The tables that grow with traffic; `instance` holds a row per running instance.
BIG = {"job", "solution", "worker"}
# Each query, its arguments as the dashboard passes them, and the tables it reads.
DASHBOARD_QUERIES = {
    "stats": (queries.STATS, (), {"worker", "job", "solution"}),
    "instances": (queries.INSTANCES, (STALE_AFTER_SECONDS,), {"instance"}),
    "current_job": (NEWEST_JOB, (), {"job"}),
    "per_minute": (queries.PER_MINUTE, (CHART_MINUTES,), {"job", "solution"}),
    "closes_per_minute": (queries.CLOSES_PER_MINUTE, (CHART_MINUTES,), {"worker"}),
    "busiest": (
        queries.BUSIEST,
        (float(BUSIEST_WINDOW_SECONDS), BUSIEST_COUNT),
        {"solution"},
    ),
}
INDEXES = """
SELECT i.indexrelid::regclass::text AS name, i.indrelid::regclass::text AS "table",
  i.indpred IS NOT NULL AS partial
FROM pg_index i WHERE i.indrelid::regclass::text = ANY($1)
"""


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


def whole_table_reads(plan: dict[str, Any], indexes: dict[str, asyncpg.Record]) -> list[str]:
    """Plan nodes that read a big table whole: a sequential scan, or a full index scan
    (no index condition, and an index over every row)."""
    found = []
    for node in _nodes(plan):
        kind = node["Node Type"]
        if kind == "Seq Scan" and node["Relation Name"] in BIG:
            found.append(f"Seq Scan on {node['Relation Name']}")
        index = indexes.get(node.get("Index Name", ""))
        if index is not None and "Index Cond" not in node and not index["partial"]:
            found.append(f"{kind} using {index['name']} without a condition")
    return found


@pytest.mark.parametrize("name", DASHBOARD_QUERIES)
async def test_a_dashboard_query_reads_no_big_table_whole(db: asyncpg.Pool, name: str) -> None:
    sql, args, tables = DASHBOARD_QUERIES[name]
    async with db.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        await connection.execute("SET LOCAL jit = off")  # the costs above would start it
        indexes = {row["name"]: row for row in await connection.fetch(INDEXES, sorted(BIG))}
        (plan,) = orjson.loads(await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
    nodes = _nodes(plan["Plan"])
    # The positive control: the walk reaches every table the query reads.
    assert {node.get("Relation Name") for node in nodes} >= tables, plan
    whole = whole_table_reads(plan["Plan"], indexes)
    assert not whole, f"{name} reads {whole}; plan: {orjson.dumps(plan).decode()}"


def test_a_sequential_scan_is_seen() -> None:
    """The check itself: a plan that scans `worker` whole is caught."""
    plan = {
        "Node Type": "Aggregate",
        "Plans": [{"Node Type": "Seq Scan", "Relation Name": "worker"}],
    }
    assert whole_table_reads(plan, {}) == ["Seq Scan on worker"]
