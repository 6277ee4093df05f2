"""The satisfaction service: reviews and ratings, post-delivery surveys with NPS, feedback."""
