"""/api/openapi.json describes every API route, and every route answers as described.

The document is generated from the route table, the parameter models and the
body models (`node_server.openapi`); these tests hold it to the real answers.
"""

from __future__ import annotations

import re
import uuid

import aiohttp
import orjson
import pydantic
import pytest
from jsonschema import Draft202012Validator, FormatChecker, ValidationError

from node_server import api, api_models
from node_server.app import create_app
from node_server.openapi import build
from node_server.route import Route
from node_server.routes import document
from node_server.settings import NodeServerSettings
from tests.support import clients
from tests.support.http import ADMIN_REQUEST
from tests.support.poll import until
from tests.support.stack import Backends, Stack

ADMIN, NODE = "adm1n", "n0de"
TASK = "{task}"  # replaced by a real task id
HARDWARE = "{hardware}"  # replaced by a real hardware id
HEIGHT = "{height}"
BELOW = "{below}"  # the height before it
SPEC = document()
# (method, described path) -> (valid request, token, invalid request, token)
CASES: dict[tuple[str, str], tuple[str, str | None, str | None, str | None]] = {
    ("GET", "/api/openapi.json"): ("/api/openapi.json", None, None, None),
    ("GET", "/api/stats"): ("/api/stats", ADMIN, "/api/stats", None),
    ("GET", "/api/dashboard"): ("/api/dashboard", ADMIN, "/api/dashboard", NODE),
    ("GET", "/api/jobs"): ("/api/jobs?limit=5", ADMIN, "/api/jobs?limit=x", ADMIN),
    ("POST", "/api/jobs"): ("/api/jobs", NODE, "/api/jobs", NODE),
    ("GET", "/api/jobs/{task_id}"): (f"/api/jobs/{TASK}", ADMIN, "/api/jobs/nope", ADMIN),
    ("GET", "/api/jobs/{task_id}/solutions"): (
        f"/api/jobs/{TASK}/solutions",
        ADMIN,
        f"/api/jobs/{uuid.uuid4()}/solutions",
        ADMIN,
    ),
    ("POST", "/api/jobs/{task_id}/retire"): (
        f"/api/jobs/{TASK}/retire",
        ADMIN,
        f"/api/jobs/{uuid.uuid4()}/retire",
        ADMIN,
    ),
    ("POST", "/api/retire"): (  # above the one before: only this case's own job
        f"/api/retire?above_height={BELOW}",
        ADMIN,
        "/api/retire",
        ADMIN,
    ),
    ("GET", "/api/jobs/by-height/{block_height}/solutions"): (
        f"/api/jobs/by-height/{HEIGHT}/solutions?min_target=1",
        NODE,
        "/api/jobs/by-height/-1/solutions",
        NODE,
    ),
    ("GET", "/api/workers"): ("/api/workers?connected=true", ADMIN, "/api/workers", None),
    ("POST", "/api/session"): ("/api/session", None, "/api/session", None),
    ("DELETE", "/api/session"): ("/api/session", None, None, None),
    ("GET", "/api/workers/{hardware_id}/stats"): (
        f"/api/workers/{HARDWARE}/stats?window=10m",
        ADMIN,
        f"/api/workers/{HARDWARE}/stats?window=soon",
        ADMIN,
    ),
    ("GET", "/api/fleet"): (f"/api/fleet?q={HARDWARE}", ADMIN, "/api/fleet?limit=0", ADMIN),
    ("GET", "/api/dead-letters"): (
        "/api/dead-letters?peek=3",
        ADMIN,
        "/api/dead-letters?peek=-1",
        ADMIN,
    ),
    ("POST", "/api/dead-letters/{queue}/requeue"): (
        "/api/dead-letters/job/requeue?limit=5",
        ADMIN,
        "/api/dead-letters/nope/requeue",
        ADMIN,
    ),
}


def described() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in SPEC["paths"].items() for method in item}


def test_every_api_route_is_described(backends: Backends) -> None:
    app = create_app(NodeServerSettings(**backends.settings()))
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api")
    }
    assert registered == described()
    assert set(CASES) == described(), "every described route has a case below"


@pytest.fixture(scope="module")
async def guarded(start_servers) -> Stack:
    async with start_servers(node={"admin_token": ADMIN, "auth_tokens": NODE}) as stack:
        yield stack


async def _request(
    session: aiohttp.ClientSession, method: str, url: str, token: str | None, body: bytes | None
) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    elif method != "GET":  # as documented for admin routes: see the test below
        headers.update(ADMIN_REQUEST)
    async with session.request(method, url, data=body, headers=headers) as response:
        assert response.content_type == "application/json"
        return response.status, orjson.loads(await response.read())


@pytest.mark.parametrize(("method", "path"), sorted(CASES))
async def test_route_answers_with_documented_status_codes(
    guarded: Stack, method: str, path: str
) -> None:
    height, hardware_id = clients.next_height(), f"spec-{uuid.uuid4().hex[:6]}"
    async with clients.worker_client(guarded.worker_url, clients.welcome(hardware_id)) as w:
        async with aiohttp.ClientSession() as session:
            url = f"{guarded.node_http}/api/jobs"
            status, _ = await _request(
                session, "POST", url, NODE, orjson.dumps(clients.job(height))
            )
            assert status == 202
            task_id = (await w.job_for(height, timeout=15))["task_id"]
            await w.send(clients.solution(task_id))  # so the solution lists have an item to check
            await _solution_stored(session, guarded, task_id)
            valid, valid_token, invalid, invalid_token = CASES[(method, path)]
            documented = SPEC["paths"][path][method.lower()]["responses"]
            fill = {
                TASK: task_id,
                HARDWARE: hardware_id,
                HEIGHT: str(height),
                BELOW: str(height - 1),
            }
            body = _body(method, path)
            request_body = SPEC["paths"][path][method.lower()].get("requestBody")
            if request_body is not None:
                assert_body_matches(orjson.loads(body), request_body)
            status, answer = await _request(
                session, method, guarded.node_http + _fill(valid, fill), valid_token, body
            )
            assert status < 300 and str(status) in documented
            assert_body_matches(answer, documented[str(status)])
            if invalid is not None:
                bad_body = b"{}" if method == "POST" else None
                status, error = await _request(
                    session,
                    method,
                    guarded.node_http + _fill(invalid, fill),
                    invalid_token,
                    bad_body,
                )
                assert status >= 400 and str(status) in documented
                assert_body_matches(error, documented[str(status)])
                if request_body is not None:  # the body refused is refused by the document too
                    with pytest.raises(ValidationError):
                        assert_body_matches(orjson.loads(bad_body), request_body)


def _body(method: str, path: str) -> bytes | None:
    if method != "POST":
        return None
    if path == "/api/session":
        return orjson.dumps({"token": ADMIN})
    return orjson.dumps(clients.job(clients.next_height()))


def assert_body_matches(body: object, documented: dict) -> None:
    """The body validates against the response's schema (OpenAPI 3.1 is JSON Schema)."""
    content = documented.get("content")
    if content is None:  # the description itself: checked by the test below
        return
    schema = {**content["application/json"]["schema"], "components": SPEC["components"]}
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(body)


async def _solution_stored(session: aiohttp.ClientSession, stack: Stack, task_id: str) -> None:
    url = f"{stack.node_http}/api/jobs/{task_id}/solutions"
    await until(
        lambda: _request(session, "GET", url, ADMIN, None), lambda answer: answer[1]["items"]
    )


def test_the_description_is_a_valid_openapi_document() -> None:
    Draft202012Validator.check_schema({"$defs": SPEC["components"]["schemas"]})
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', orjson.dumps(SPEC).decode()))
    assert refs <= set(SPEC["components"]["schemas"]), "a $ref points nowhere"
    assert SPEC["openapi"].startswith("3.1")


async def test_the_served_document_is_the_generated_one(guarded: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        status, served = await _request(
            session, "GET", f"{guarded.node_http}/api/openapi.json", None, None
        )
    assert status == 200
    assert served == orjson.loads(orjson.dumps(SPEC))


def _documented(schema: str) -> dict:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


JOB = {
    "task_id": str(uuid.uuid4()),
    "block_height": 17,
    "epoch_challenge": {"epoch_number": 1},
    "created_at": "2026-11-24T01:17:10.532+00:00",
    "broadcast_at": None,
    "retired_at": None,
}


@pytest.mark.parametrize(
    ("schema", "good", "wrong"),
    [
        ("Error", {"error": "e", "detail": "d"}, {"error": "e", "detail": "d", "extra": 1}),
        ("Error", {"error": "e", "detail": "d"}, {"error": "e"}),
        ("JobPage", {"items": [JOB], "next_before": 17}, {"items": [JOB]}),
        ("JobPage", {"items": [JOB], "next_before": None}, {"items": [{**JOB, "task_id": "x"}]}),
        ("Job", {**JOB, "solution_count": 0}, {**JOB, "solution_count": -1}),
        ("Job", {**JOB, "solution_count": 0}, {**JOB, "solution_count": 0, "created_at": 5}),
        (
            "Stats",
            api_models.Stats(
                workers={"connected": 1},
                nodes={"connected": 0, "connected_here": 0},
                current_height=None,
                jobs={"last_minute": 0, "last_hour": 2},
                solutions={"last_minute": 0, "last_hour": 0},
            ).model_dump(),
            {"workers": {"connected": "1"}},
        ),
        (
            "Accepted",
            {"status": "accepted", "block_height": 1, "challenge_digest": "a" * 32, "poll": "/"},
            {"status": "accepted", "block_height": 1, "challenge_digest": "A" * 32, "poll": "/"},
        ),
    ],
)
def test_a_body_of_another_shape_fails_the_check(schema: str, good: dict, wrong: dict) -> None:
    assert_body_matches(good, _documented(schema))
    with pytest.raises(ValidationError):
        assert_body_matches(wrong, _documented(schema))


def test_a_handler_cannot_answer_with_a_field_its_model_lacks() -> None:
    with pytest.raises(pydantic.ValidationError):
        api_models.Job.model_validate({**JOB, "solution_count": 0, "challenge_digest": "ab"})


def test_a_route_without_a_description_fails_the_document() -> None:
    with pytest.raises(ValueError, match="undescribed has no operation"):
        build([Route("GET", "/api/undescribed", api.stats, "admin")])


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(key, value)
    return template


def test_admin_posts_without_a_body_document_the_request_header() -> None:
    for path, methods in SPEC["paths"].items():
        for method, operation in methods.items():
            header = [p for p in operation.get("parameters", []) if p["in"] == "header"]
            admin = operation["security"] != [{"node": []}] and "/openapi" not in path
            needs = method in ("post", "delete") and "requestBody" not in operation and admin
            assert bool(header) == needs, (method, path)
            if needs:
                assert header[0]["name"] == "X-Wspool-Request" and "415" in operation["responses"]
