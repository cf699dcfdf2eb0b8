"""Wiring of process_job_worker: queue `job.persist_and_broadcast` to topic `job`."""

from aiohttp import web

from process_job_worker.persist import jobs
from process_job_worker.settings import ProcessJobWorkerSettings
from shared.pipeline.app import Pipeline, create_consumer_app
from shared.protocol import JobMessage
from shared.routes import JOB


def create_app(settings: ProcessJobWorkerSettings) -> web.Application:
    persisted = jobs(settings.max_height_jump)
    return create_consumer_app(settings, Pipeline(JOB.queue, JobMessage, persisted))
