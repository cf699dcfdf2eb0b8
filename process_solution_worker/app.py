"""Wiring of process_solution_worker: queue `solution.persist_and_broadcast` to topic
`solution`, the candidate lane (queue `solution.candidate.persist_and_broadcast` to
topic `solution.candidate`), and the retention of old rows."""

from aiohttp import web

from process_solution_worker.persist import CANDIDATES, SOLUTIONS
from process_solution_worker.retention import keep_pruning
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from shared.catalogue import PROCESS_SOLUTION_WORKER
from shared.pipeline.app import Pipeline, create_consumer_app
from shared.protocol import SolutionMessage
from shared.routes import CANDIDATE, SOLUTION
from shared.runtime.lifecycle import background

# Candidates are few (one per block found, per node's target) and travel on a
# channel, consumer and Kafka producer of their own. Batches never wait to
# fill, so a lone candidate is a batch of one; the caps (a fifth of the share
# lane's) only bound what a burst of candidates holds at once.
CANDIDATE_LIMITS = {"batch_size": 100, "prefetch_count": 20, "max_in_flight_batches": 4}


def create_app(settings: ProcessSolutionWorkerSettings) -> web.Application:
    shares = Pipeline(SOLUTION.queue, SolutionMessage, SOLUTIONS)
    candidates = Pipeline(CANDIDATE.queue, SolutionMessage, CANDIDATES, overrides=CANDIDATE_LIMITS)
    lanes = {"all": [shares, candidates], "shares": [shares], "candidates": [candidates]}
    app = create_consumer_app(settings, *lanes[settings.lanes])
    # Pruning is bulk work: never in the candidates' own process.
    if settings.retention_days and settings.lanes != "candidates":
        app.cleanup_ctx.append(background("retention", keep_pruning(settings.retention_days)))
    return app


def lanes_per_process(settings: ProcessSolutionWorkerSettings) -> list[dict[str, str]]:
    """With several processes, the first takes the candidate lane alone: a busy
    share lane then costs candidates no wait for the event loop."""
    lane = f"{PROCESS_SOLUTION_WORKER.env_prefix}LANES"
    return [{lane: "candidates"}] + [{lane: "shares"}] * (settings.processes - 1)
