"""Wiring of process_job_worker: queue `job.persist_and_broadcast` to topic `job`."""

from aiohttp import web

from process_job_worker.persist import JOBS
from process_job_worker.settings import ProcessJobWorkerSettings
from shared.consumer_app import Pipeline, create_consumer_app
from shared.protocol import JobMessage
from shared.rabbit import JOB_QUEUE


def create_app(settings: ProcessJobWorkerSettings) -> web.Application:
    return create_consumer_app(settings, Pipeline(JOB_QUEUE, JobMessage, JOBS))
