"""python -m process_job_worker [--help]"""

from process_job_worker.app import create_app
from shared.catalogue import PROCESS_JOB_WORKER
from shared.runtime.lifecycle import serve

if __name__ == "__main__":
    serve(PROCESS_JOB_WORKER, create_app)
