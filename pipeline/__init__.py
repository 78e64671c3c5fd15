"""The pipeline: CLI, config, stage runner, catalog and MLflow tracking. The only package that wires things."""
