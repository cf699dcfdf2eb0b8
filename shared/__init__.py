"""wspool's common library: protocol, settings, brokers, database, fan-out, metrics."""
