"""How wspool is shipped and run.

The command lines, the local stack, the benchmark tool, the Dockerfile,
docker-compose and the Kubernetes manifests.
"""
