"""Tracing through streams, span export and metrics."""
