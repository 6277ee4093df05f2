"""The payments service: charges and refunds through a provider adapter."""
