"""Against the real Postgres, RabbitMQ and a private Tansu.

Services run in-process on the session's event loop, reached through real sockets.
"""
