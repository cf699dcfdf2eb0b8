"""JSON Schemas (OpenAPI 3.1) of what node_server's HTTP API answers.

`tests/test_openapi.py` validates real responses against them, so a change to
a query or handler that alters a body shows up as a failing test, not as a
surprised API client.
"""

from __future__ import annotations

from typing import Any

INT64 = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
COUNT = {"type": "integer", "minimum": 0}
TIME = {"type": "string", "format": "date-time"}
MAYBE_TIME = {"type": ["string", "null"], "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
TEXT = {"type": "string"}
SECONDS = {"type": ["number", "null"], "minimum": 0}


def _object(**properties: Any) -> dict[str, Any]:
    """An object with exactly these properties, all present."""
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict[str, Any]:
    return _object(
        items={"type": "array", "items": _ref(item)},
        next_before={"type": ["integer", "null"]},
    )


STATS = _object(
    workers=_object(connected=COUNT),
    nodes=_object(connected_here=COUNT),
    current_height={"type": ["integer", "null"]},
    jobs=_object(last_minute=COUNT, last_hour=COUNT),
    solutions=_object(last_minute=COUNT, last_hour=COUNT),
)

JOB_FIELDS = {
    "task_id": UUID,
    "block_height": INT64,
    "epoch_challenge": {"type": "object"},
    "created_at": TIME,
    "broadcast_at": MAYBE_TIME,
    "retired_at": MAYBE_TIME,
}

SOLUTION = _object(
    id=COUNT,
    task_id=UUID,
    nonce=TEXT,
    hardware_id=TEXT,
    caption=TEXT,
    solution={"type": "object", "description": "The worker's `solution` object, unchanged."},
    solution_target=INT64,
    valid={"type": "boolean"},
    checked={"type": "boolean"},
    created_at=TIME,
    broadcast_at=MAYBE_TIME,
)

WORKER = _object(
    id=COUNT,
    hardware_id=TEXT,
    caption=TEXT,
    address=TEXT,
    hardware=TEXT,
    ip=TEXT,
    remote_ip=TEXT,
    server_instance=TEXT,
    connected_at=TIME,
    last_seen_at=TIME,
    disconnected_at=MAYBE_TIME,
    close_code={"type": ["integer", "null"]},
)

LATENCY = _object(count=COUNT, p50=SECONDS, p90=SECONDS, p99=SECONDS)

SCHEMAS: dict[str, Any] = {
    "Error": _object(error=TEXT, detail=TEXT),
    "Stats": STATS,
    "Dashboard": _object(
        stats=STATS,
        per_minute={
            "type": "array",
            "items": _object(minute=TIME, jobs=COUNT, solutions=COUNT),
        },
        busiest_workers={
            "type": "array",
            "items": _object(hardware_id=TEXT, solutions=COUNT, last_solution_at=TIME),
        },
        latency=_object(job=LATENCY, solution=LATENCY),
    ),
    "Job": _object(**JOB_FIELDS, solution_count=COUNT),
    "JobRow": _object(**JOB_FIELDS),
    "JobPage": _page("JobRow"),
    "Solution": SOLUTION,
    "SolutionPage": _page("Solution"),
    "Worker": WORKER,
    "WorkerPage": _page("Worker"),
    "WorkerStats": _object(
        hardware_id=TEXT,
        window_seconds=COUNT,
        connections=COUNT,
        connected=COUNT,
        last_seen_at=MAYBE_TIME,
        solutions=COUNT,
        solutions_total=COUNT,
    ),
    "NodeJob": {
        "type": "object",
        "required": ["epoch_challenge", "proof_target", "block_height"],
        "properties": {
            "type": {"type": "string", "enum": ["job"]},
            "epoch_challenge": {"type": "object"},
            "proof_target": INT64,
            "block_height": INT64,
        },
    },
    "Accepted": _object(
        status={"type": "string", "enum": ["accepted"]},
        block_height=INT64,
        challenge_digest={"type": "string", "pattern": "^[0-9a-f]{32}$"},
        poll=TEXT,
    ),
    "Session": _object(
        status={"type": "string", "enum": ["logged_in", "logged_out"]},
    ),
    "Retired": _object(
        retired={"type": "string", "format": "uuid"},
        block_height=INT64,
        current={
            "anyOf": [
                _object(task_id={"type": "string", "format": "uuid"}, block_height=INT64),
                {"type": "null"},
            ]
        },
    ),
    "HeightSolutions": _object(
        block_height=INT64,
        solutions={
            "type": "array",
            "items": {"type": "object", "description": "A `solution` object as sent."},
        },
        next_after=COUNT,
    ),
}
