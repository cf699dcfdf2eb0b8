"""Operator and developer tools: setup, local stack, end-to-end check, benchmark."""
