"""python -m node_server [--help]"""

from node_server.app import create_app
from node_server.settings import NodeServerSettings
from shared.lifecycle import serve

if __name__ == "__main__":
    serve("node_server", NodeServerSettings, create_app)
