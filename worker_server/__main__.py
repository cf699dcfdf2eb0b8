"""python -m worker_server [--help]"""

from shared.lifecycle import serve
from worker_server.app import create_app
from worker_server.settings import WorkerServerSettings

if __name__ == "__main__":
    serve("worker_server", WorkerServerSettings, create_app)
