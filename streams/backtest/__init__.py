"""Offline replay of event files through the core, and the PM summary."""
