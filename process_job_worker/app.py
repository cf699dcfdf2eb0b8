"""Wiring of process_job_worker: queue `job.persist_and_broadcast` to topic `job`."""

from aiohttp import web

from process_job_worker.persist import persist_and_broadcast
from process_job_worker.settings import ProcessJobWorkerSettings
from shared.kafka import JOB_TOPIC
from shared.pipeline import Pipeline, create_consumer_app
from shared.protocol import JobMessage, parse
from shared.rabbit import JOB_QUEUE


def decode(body: bytes) -> JobMessage:
    return parse(JobMessage, body)


def create_app(settings: ProcessJobWorkerSettings) -> web.Application:
    return create_consumer_app(
        settings, Pipeline(JOB_QUEUE, JOB_TOPIC, decode, persist_and_broadcast)
    )
