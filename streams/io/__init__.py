"""Kafka tools around the worker: produce, tail, lag, the demo simulator."""
