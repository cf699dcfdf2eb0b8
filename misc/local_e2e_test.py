"""End-to-end check against a running stack: node job -> worker, worker solution -> node.

    python -m misc.local_e2e_test [--env-file .env.local_e2e_test]

Exits 0 and prints the round-trip times, or exits 1 with what went wrong.
Each run sends its job just above the stack's newest one (workers only get
newer heights) and retires it afterwards through the admin API, so the stack
is left as it was found: the next real job still reaches every worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from shared.catalogue import NODE_SERVER, WORKER_SERVER


class E2EFailed(Exception):
    pass


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
    return {**values, **{k: v for k, v in os.environ.items() if k.startswith("E2E_")}}


async def receive_json(ws: aiohttp.ClientWebSocketResponse, timeout: float, what: str) -> dict:
    try:
        message = await ws.receive(timeout)
    except TimeoutError:
        raise E2EFailed(f"no {what} within {timeout:g} s") from None
    if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
        raise E2EFailed(f"connection closed waiting for {what}: {ws.close_code} {message.extra}")
    return orjson.loads(message.data)


async def admin_call(url: str, admin_token: str, method: str = "GET") -> dict:
    # The header: node_server refuses a POST without it (or JSON), as a web page would send.
    headers = {"X-Wspool-Request": "1"}
    if admin_token:
        headers["Authorization"] = f"Bearer {admin_token}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, url, headers=headers) as response:
                if response.status != 200:
                    raise E2EFailed(f"{method} {url}: {response.status} {await response.text()}")
                answer: dict = await response.json()
                return answer
    except aiohttp.ClientError as error:
        raise E2EFailed(f"cannot connect: {error}") from None


async def run(
    node_url: str, worker_url: str, api: str, token: str, admin_token: str, timeout: float
) -> dict[str, float]:
    """The round trip, at a height just above the newest job; that job retired after."""
    api = api.rstrip("/")
    current = (await admin_call(f"{api}/api/stats", admin_token))["current_height"]
    height = 1 if current is None else current + 1
    times = await round_trip(node_url, worker_url, token, timeout, height)
    await admin_call(f"{api}/api/jobs/{times.pop('task_id')}/retire", admin_token, "POST")
    return times


async def round_trip(
    node_url: str, worker_url: str, token: str, timeout: float, height: int
) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    run_id = random.randrange(2**32)  # a challenge of its own: runs never answer each other
    challenge = {"epoch_number": height, "epoch_block_hash": f"e2e-{run_id}", "degree": 8191}
    solution = {
        "partial_solution": {
            "address": "aleo1e2e",
            "nonce": random.randrange(2**32),
            "commitment": "c",
        },
        "proof.w": {"x": "1", "y": "2", "infinity": False},
    }
    async with aiohttp.ClientSession(headers=headers) as session:
        try:
            node = await session.ws_connect(
                node_url, timeout=aiohttp.ClientWSTimeout(ws_close=timeout)
            )
            worker = await session.ws_connect(worker_url)
        except aiohttp.ClientError as error:
            raise E2EFailed(f"cannot connect: {error}") from None
        async with node, worker:
            await worker.send_bytes(
                orjson.dumps(
                    {
                        "type": "welcome",
                        "ip": "127.0.0.1",
                        "address": "aleo1e2e",
                        "hardware": "e2e",
                        "hardware_id": "e2e-0",
                        "caption": "local_e2e_test",
                    }
                )
            )
            await asyncio.sleep(0.2)  # let a latest job (if any) arrive before ours
            while True:
                try:
                    await worker.receive(0.05)
                except TimeoutError:
                    break
            started = time.perf_counter()
            await node.send_bytes(
                orjson.dumps(
                    {
                        "type": "job",
                        "epoch_challenge": challenge,
                        "proof_target": 100,
                        "block_height": height,
                    }
                )
            )
            job = await receive_json(worker, timeout, "job at the worker")
            job_ms = (time.perf_counter() - started) * 1000
            if set(job) != {"task_id", "epoch_challenge"} or job["epoch_challenge"] != challenge:
                raise E2EFailed(f"worker got an unexpected job frame: {job}")
            started = time.perf_counter()
            await worker.send_bytes(
                orjson.dumps(
                    {
                        "type": "solution",
                        "task_id": job["task_id"],
                        "solution": solution,
                        "solution_target": 200,
                    }
                )
            )
            received = await receive_json(node, timeout, "solution at the node")
            solution_ms = (time.perf_counter() - started) * 1000
            if received != solution:
                raise E2EFailed(f"node got {received}, expected exactly {solution}")
    return {
        "job_node_to_worker_ms": job_ms,
        "solution_worker_to_node_ms": solution_ms,
        "task_id": job["task_id"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m misc.local_e2e_test", description=__doc__)
    parser.add_argument("--env-file", type=Path, default=Path(".env.local_e2e_test"))
    args = parser.parse_args()
    env = read_env_file(args.env_file)
    try:
        times = asyncio.run(
            run(
                env.get("E2E_NODE_URL", f"ws://127.0.0.1:{NODE_SERVER.port}/"),
                env.get("E2E_WORKER_URL", f"ws://127.0.0.1:{WORKER_SERVER.port}/"),
                env.get("E2E_NODE_API", f"http://127.0.0.1:{NODE_SERVER.internal_port}"),
                env.get("E2E_TOKEN", ""),
                env.get("E2E_ADMIN_TOKEN", ""),
                float(env.get("E2E_TIMEOUT_SECONDS", "10")),
            )
        )
    except E2EFailed as error:
        print(f"e2e FAILED: {error}", file=sys.stderr)
        return 1
    print("e2e passed: " + ", ".join(f"{k}={v:.1f}" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
