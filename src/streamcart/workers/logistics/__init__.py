"""The logistics service: shipments, couriers, pickup points and fees."""
