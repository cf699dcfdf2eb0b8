"""Websocket server for workers (provers): welcome, newest jobs out, solutions in."""
