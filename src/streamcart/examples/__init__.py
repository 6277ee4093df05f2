"""Small example services used by the README, the tests and the benchmark."""
