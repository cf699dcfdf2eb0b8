"""python -m worker_server [--help]"""

from shared.catalogue import WORKER_SERVER
from shared.runtime.lifecycle import serve
from worker_server.app import create_app

if __name__ == "__main__":
    serve(WORKER_SERVER, create_app)
