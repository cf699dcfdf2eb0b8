"""A schema-driven fuzzer holds node_server to its own /api/openapi.json.

Schemathesis reads the served document and, for every operation, sends
requests the document admits and requests it forbids, with the admin and the
node token, then runs all its checks on the answers: no 5xx, only documented
statuses, bodies and headers as described, forbidden input refused and
admitted input accepted, 405 with `Allow` for a method a path lacks, tokens
not ignored. Any disagreement between the document and the server fails the
test, listed by check and operation, with the fuzzer's own report (each case
with a `curl` line to reproduce it).

The fuzzer retires jobs, requeues dead letters and posts jobs at heights of
its choosing, so it gets a stack of its own (database, RabbitMQ vhost,
Tansu): nothing it does reaches the session's services or the other tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from node_server.app import create_app
from node_server.settings import NodeServerSettings
from shared.protocol import MAX_INT64, challenge_digest
from tests.support.clients import challenge, solution_body
from tests.support.stack import RUN_ID, private_backends, server_ports, serving_server, wait_ready

ADMIN, NODE = "fuzz-adm1n", "fuzz-n0de"
ROOT = Path(__file__).parents[2]
# Per operation and phase: enough to find each kind of disagreement the
# document once had, in about 20 s on two busy cores.
EXAMPLES = 20
DEADLINE_SECONDS = 120.0
AUTH = f"""
[auth.openapi.admin]
bearer = "{ADMIN}"
[auth.openapi.node]
bearer = "{NODE}"
"""


@pytest.fixture(scope="module")
async def fuzzed() -> AsyncIterator[str]:
    """node_server's internal URL, on backends of its own, with a little data to page through."""
    async with private_backends(f"wspool_fuzz_{RUN_ID}") as backends:
        if not backends.vhost:
            pytest.skip("no private RabbitMQ vhost: the fuzzer's jobs would reach other tests")
        await _seed(backends.postgres_dsn)
        settings = NodeServerSettings(
            **backends.settings(
                **server_ports(),
                admin_token=ADMIN,
                auth_tokens=NODE,
                # A job far above the newest is a 422 by a rule on what is stored, which no
                # schema can state: here every height the document admits is plausible.
                max_height_jump=MAX_INT64,
            )
        )
        async with serving_server(settings, create_app(settings)) as base:
            await wait_ready(base)
            yield base


async def _seed(dsn: str) -> None:
    """A job with a solution, and an open and a closed worker connection."""
    connection = await asyncpg.connect(dsn)
    try:
        task_id, epoch_challenge = uuid.uuid4(), challenge(7)
        await connection.execute(
            "INSERT INTO job (block_height, epoch_challenge, task_id, challenge_digest, "
            "proof_target) VALUES (7, $1::jsonb, $2, $3, 10)",
            orjson.dumps(epoch_challenge).decode(),
            task_id,
            challenge_digest(epoch_challenge),
        )
        await connection.execute(
            "INSERT INTO solution (task_id, nonce, hardware_id, caption, solution, "
            "solution_target) VALUES ($1, '1', 'gpu-fuzz', 'c', $2::jsonb, 50)",
            task_id,
            orjson.dumps(solution_body()).decode(),
        )
        for closed in (False, True):
            await connection.execute(
                "INSERT INTO worker (ip, remote_ip, address, hardware, hardware_id, caption, "
                "server_instance, disconnected_at, close_code) VALUES ('10.0.0.1', "
                "'127.0.0.1', 'aleo1fuzz', 'h', 'gpu-fuzz', 'c', 'fuzz', "
                "CASE WHEN $1 THEN now() END, CASE WHEN $1 THEN 1000 END)",
                closed,
            )
    finally:
        await connection.close()


async def test_the_server_answers_as_its_document_says(fuzzed: str, tmp_path: Path) -> None:
    (tmp_path / "schemathesis.toml").write_text(AUTH)
    report = tmp_path / "report.json"
    # A process of its own; this one's event loop must go on serving node_server meanwhile.
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", "schemathesis.toml"),
        *("run", f"{fuzzed}/api/openapi.json", "--checks", "all"),
        *("--max-examples", str(EXAMPLES), "--workers", "1", "--request-timeout", "10"),
        *("--report", "json", "--report-json-path", str(report), "--no-color"),
        *("--generation-database", "none"),
        cwd=tmp_path,  # where it keeps its state
        # The hooks ask the protocol's parser, so they import this checkout.
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.support.fuzz_hooks",
            "PYTHONPATH": str(ROOT),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"the fuzzer did not finish within {DEADLINE_SECONDS:g} s")
    text = output.decode("utf-8", "replace")
    assert report.exists(), text[-3000:]
    summary = json.loads(report.read_text())  # orjson would make a float of the seed
    disagreements = [
        f"{failure['code']} {failure['title']}: {', '.join(failure['operations'])}"
        for failure in summary["failures"]
    ] + [f"error: {error['title']} ({error['count']})" for error in summary["errors"]]
    assert not disagreements, "\n".join(
        [
            f"the server and /api/openapi.json disagree (seed {summary['seed']}):",
            *disagreements,
            "",
            _failures(text),
        ]
    )
    # The control: a run that reached nothing would have found nothing either.
    operations = summary["operations"]
    assert operations["tested"] == operations["total"] >= 15, operations
    assert summary["test_cases"]["generated"] >= 15 * EXAMPLES, summary["test_cases"]
    assert summary["exit_code"] == 0, text[-3000:]


def _failures(text: str) -> str:
    """The fuzzer's own account of each failure and error, from its output."""
    found = [at for at in (text.find(" ERRORS "), text.find(" FAILURES ")) if at >= 0]
    start = min(found, default=len(text) - 3000)
    return text[start : text.find(" SUMMARY ", start)]
