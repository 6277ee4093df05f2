"""Instances, heartbeats, discovery and health monitoring."""
