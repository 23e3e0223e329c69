"""Segment-spec product events: parsing, validation, account resolution."""
