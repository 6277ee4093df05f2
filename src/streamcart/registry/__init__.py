"""Instances, heartbeats, discovery and health monitoring."""

from streamcart.registry.discovery import Discovery
from streamcart.registry.instances import Instance, Registry

__all__ = ["Discovery", "Instance", "Registry"]
