"""Faults a healthy test server never makes, made on purpose: a misbehaving link
(:mod:`.proxy`) and error replies from the server itself (:mod:`.server`)."""

from tests.integration.faults.proxy import FaultProxy, Mode
from tests.integration.faults.server import AclUser, acl_user, misconf, readonly

__all__ = ["AclUser", "FaultProxy", "Mode", "acl_user", "misconf", "readonly"]
