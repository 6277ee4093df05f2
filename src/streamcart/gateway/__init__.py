"""The HTTP edge: auth, rate limits, routing, breakers."""
