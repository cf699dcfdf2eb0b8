"""The routes messages take between the processes: exchange → queue → topic.

A message enters RabbitMQ on a durable fanout exchange feeding one durable
work queue (dead-lettering to `<queue>.dead_letter`); a process worker stores
it and produces it to a Kafka topic; the other websocket server fans that
topic out to its clients. These names join four processes, so they are
written here once: the services, the setup, the dashboard API and the tests
read them from `ROUTES`.

    node --> node_server --JOB--> process_job_worker --> worker_server --> workers
    worker --> worker_server --SOLUTION/CANDIDATE--> process_solution_worker
           --> node_server --> nodes
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    exchange: str  # also the route's name in the dead-letter API
    queue: str
    topic: str

    @property
    def dead_letter_queue(self) -> str:
        return dead_letter_queue(self.queue)


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dead_letter"


JOB = Route(exchange="job", queue="job.persist_and_broadcast", topic="job")
SOLUTION = Route(exchange="solution", queue="solution.persist_and_broadcast", topic="solution")
# The candidate lane: solutions that meet the lowest proof target waiting at
# their height, on an exchange, queue and topic of their own so shares can't
# delay them (docs/architecture.md, "The candidate lane").
CANDIDATE = Route(
    exchange="solution.candidate",
    queue="solution.candidate.persist_and_broadcast",
    topic="solution.candidate",
)
ROUTES: dict[str, Route] = {route.exchange: route for route in (JOB, SOLUTION, CANDIDATE)}
