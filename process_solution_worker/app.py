"""Wiring of process_solution_worker: queue `solution.persist_and_broadcast` to topic `solution`."""

from aiohttp import web

from process_solution_worker.persist import persist_and_broadcast
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from shared.kafka import SOLUTION_TOPIC
from shared.pipeline import Pipeline, create_consumer_app
from shared.protocol import SolutionMessage, parse
from shared.rabbit import SOLUTION_QUEUE


def decode(body: bytes) -> SolutionMessage:
    return parse(SolutionMessage, body)


def create_app(settings: ProcessSolutionWorkerSettings) -> web.Application:
    return create_consumer_app(
        settings, Pipeline(SOLUTION_QUEUE, SOLUTION_TOPIC, decode, persist_and_broadcast)
    )
