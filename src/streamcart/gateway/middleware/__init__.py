"""The gateway's middleware, one per module."""
