"""Signals -> score -> status and segments -> explained transitions."""
