"""JSON logs: one object per line, with the service name and any `extra` fields."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from shared.runtime.supervisor import process_index

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        # Which of several processes of the service wrote the line (none when it runs as one).
        self.process = process_index()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "event": record.getMessage(),
            "logger": record.name,
        }
        if self.process is not None:
            entry["process"] = self.process
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


# Broker clients log every expected reconnect (a broker restart) with a full traceback.
BROKER_CLIENT_LOGGERS = ("aiormq", "aio_pika", "aiokafka")


class FoldBrokerTracebacks(logging.Filter):
    """Keep the broker clients' line, fold its traceback into one `error` field."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.name.startswith(BROKER_CLIENT_LOGGERS):
            record.error = repr(record.exc_info[1])
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(FoldBrokerTracebacks())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter (reconnect attempts, access lines) at WARNING unless debugging.
    for noisy in ("aiokafka", "aiormq", "aio_pika", "aiohttp.access", "yoyo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
