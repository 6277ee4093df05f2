"""The moderation service: a text classifier for abuse, spam and links, and its decisions."""
