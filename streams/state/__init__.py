"""Per-account state: event-time buckets, traits, codec to/from bytes."""
