"""Tests of one module at a time: no service, no broker, no database."""
