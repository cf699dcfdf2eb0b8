"""Stores each solution once per (task_id, nonce) and broadcasts it on topic `solution`."""
