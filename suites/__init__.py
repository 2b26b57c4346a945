"""The product's suites: pytest files that run the scenario catalog against a target (``pytest --pyargs suites``)."""
