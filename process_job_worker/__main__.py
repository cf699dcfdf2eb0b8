"""python -m process_job_worker [--help]"""

from process_job_worker.app import create_app
from process_job_worker.settings import ProcessJobWorkerSettings
from shared.lifecycle import serve

if __name__ == "__main__":
    serve("process_job_worker", ProcessJobWorkerSettings, create_app)
