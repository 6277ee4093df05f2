"""The recommendations service: co-purchase and view graphs, user profiles."""
