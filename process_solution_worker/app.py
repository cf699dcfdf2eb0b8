"""Wiring of process_solution_worker: queue `solution.persist_and_broadcast` to topic `solution`."""

from aiohttp import web

from process_solution_worker.persist import SOLUTIONS
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from shared.consumer_app import Pipeline, create_consumer_app
from shared.protocol import SolutionMessage
from shared.rabbit import SOLUTION_QUEUE


def create_app(settings: ProcessSolutionWorkerSettings) -> web.Application:
    return create_consumer_app(settings, Pipeline(SOLUTION_QUEUE, SolutionMessage, SOLUTIONS))
