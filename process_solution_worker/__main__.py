"""python -m process_solution_worker [--help]"""

from process_solution_worker.app import create_app, lanes_per_process
from shared.catalogue import PROCESS_SOLUTION_WORKER
from shared.runtime.lifecycle import serve

if __name__ == "__main__":
    serve(PROCESS_SOLUTION_WORKER, create_app, lanes_per_process)
