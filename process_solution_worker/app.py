"""Wiring of process_solution_worker: queue `solution.persist_and_broadcast` to topic
`solution`, and the retention of old rows."""

from aiohttp import web

from process_solution_worker.persist import SOLUTIONS
from process_solution_worker.retention import keep_pruning
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from shared.consumer_app import Pipeline, create_consumer_app
from shared.lifecycle import background
from shared.protocol import SolutionMessage
from shared.rabbit import SOLUTION_QUEUE


def create_app(settings: ProcessSolutionWorkerSettings) -> web.Application:
    app = create_consumer_app(settings, Pipeline(SOLUTION_QUEUE, SolutionMessage, SOLUTIONS))
    if settings.retention_days:
        app.cleanup_ctx.append(background("retention", keep_pruning(settings.retention_days)))
    return app
