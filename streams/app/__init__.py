"""The Faust shell: app factory and settings, topics, tables, agents, web endpoints."""
