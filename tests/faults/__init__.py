"""Fault injection (marker `faults`).

Private brokers and services as subprocesses, killed and restarted under traffic.
"""
