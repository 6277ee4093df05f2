"""The inventory service: stock on hand and all-or-nothing reservations."""
