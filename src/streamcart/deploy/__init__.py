"""Manifests that run a deployment description elsewhere (Kubernetes with KEDA)."""

from streamcart.deploy.kubernetes import render
from streamcart.deploy.target import Target

__all__ = ["Target", "render"]
