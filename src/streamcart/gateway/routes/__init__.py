"""The gateway's route handlers, one module per area."""
