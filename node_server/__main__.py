"""python -m node_server [--help]"""

from node_server.app import create_app
from shared.catalogue import NODE_SERVER
from shared.runtime.lifecycle import serve

if __name__ == "__main__":
    serve(NODE_SERVER, create_app)
