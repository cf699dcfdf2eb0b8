"""Retention deletes what is older than retention_days, batch by batch, and nothing else."""

from __future__ import annotations

import uuid

import asyncpg

from process_solution_worker.retention import prune_once

SOLUTION = """
INSERT INTO solution (task_id, nonce, hardware_id, caption, solution, solution_target, created_at)
VALUES ($1, $2, 'retention', 'test', '{}'::jsonb, 1, now() - make_interval(days => $3))
"""
WORKER = """
INSERT INTO worker (ip, remote_ip, address, hardware, hardware_id, caption, server_instance,
                    connected_at, disconnected_at)
VALUES ('1', '1', 'a', 'h', $1, 'c', 'retention-test',
        now() - make_interval(days => $2), now() - make_interval(days => $3))
RETURNING id
"""


async def test_old_solutions_and_closed_worker_rows_go_the_rest_stays(db: asyncpg.Pool) -> None:
    task = uuid.uuid4()
    for nonce, age_days in (("old-1", 40), ("old-2", 31), ("old-3", 45), ("new", 29)):
        await db.execute(SOLUTION, task, nonce, age_days)
    old_closed = await db.fetchval(WORKER, "retention-old", 40, 40)
    new_closed = await db.fetchval(WORKER, "retention-new", 2, 1)
    old_open = await db.fetchval(
        "UPDATE worker SET disconnected_at = NULL WHERE id = $1 RETURNING id",
        await db.fetchval(WORKER, "retention-open", 40, 40),
    )

    deleted = await prune_once(db, days=30, batch_rows=2)  # two batches for the solutions

    assert deleted["solution"] >= 3 and deleted["worker"] >= 1
    nonces = await db.fetch("SELECT nonce FROM solution WHERE task_id = $1", task)
    assert [row["nonce"] for row in nonces] == ["new"]
    kept = await db.fetch(
        "SELECT id FROM worker WHERE id = ANY($1::bigint[])", [old_closed, new_closed, old_open]
    )
    assert sorted(row["id"] for row in kept) == sorted([new_closed, old_open])


async def test_ended_bans_and_unheard_instances_go_the_rest_stays(db: asyncpg.Pool) -> None:
    tag = uuid.uuid4().hex[:8]
    ban = (
        "INSERT INTO worker_ban (kind, key, banned_until, reason, server_instance) "
        "VALUES ('identity', $1, now() - make_interval(days => $2), 'test', 'test')"
    )
    await db.execute(ban, f"old-{tag}", 40)
    await db.execute(ban, f"recent-{tag}", 1)
    beat = (
        "INSERT INTO instance (role, name, version, started_at, heartbeat_at, ready) "
        "VALUES ('worker_server', $1, 'x', now(), now() - make_interval(days => $2), false)"
    )
    await db.execute(beat, f"old-{tag}", 40)
    await db.execute(beat, f"recent-{tag}", 1)

    await prune_once(db, days=30)

    bans = await db.fetch("SELECT key FROM worker_ban WHERE key LIKE $1", f"%-{tag}")
    assert [row["key"] for row in bans] == [f"recent-{tag}"]
    instances = await db.fetch("SELECT name FROM instance WHERE name LIKE $1", f"%-{tag}")
    assert [row["name"] for row in instances] == [f"recent-{tag}"]
