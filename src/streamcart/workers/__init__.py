"""The e-commerce domain services, one module or package each."""
