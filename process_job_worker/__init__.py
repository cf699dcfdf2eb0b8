"""Stores each job once per block height and broadcasts it on Kafka topic `job`."""
