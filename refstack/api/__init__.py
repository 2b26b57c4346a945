"""HTTP API of the reference stack: ``python -m refstack.api``; ``create_app`` for tests."""
