"""python -m process_solution_worker [--help]"""

from process_solution_worker.app import create_app
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from shared.lifecycle import serve

if __name__ == "__main__":
    serve("process_solution_worker", ProcessSolutionWorkerSettings, create_app)
