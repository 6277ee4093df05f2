"""The users service: accounts, password hashes and Bearer tokens."""
