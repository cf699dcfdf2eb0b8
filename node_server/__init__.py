"""Websocket server for the pool's nodes: jobs in, matching solutions out."""
