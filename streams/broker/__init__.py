"""The embedded Kafka-protocol broker (Tansu): start/stop, detection, workarounds."""
