"""The orders service: placement, the status machine of the saga, cancel and lists."""
