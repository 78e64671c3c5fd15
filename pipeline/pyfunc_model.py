"""The MLflow model of a registered GBDT, linear or blend candidate, logged as code ("models from code"): a pyfunc that
scores raw rows (a pandas DataFrame with the training data's columns) through the run's scoring package, its artifact
`package`. `pipeline.tracking` logs this file beside the project's code; MLflow runs it when the model is logged and
when it is loaded, so nothing is pickled. With `pipeline.tracking`, the only module that imports mlflow."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd


class PackageModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.package = Path(context.artifacts["package"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        import polars as pl

        from pipeline.package import probabilities

        with tempfile.TemporaryDirectory() as tmp:
            rows = Path(tmp) / "rows.parquet"
            pl.from_pandas(model_input).write_parquet(rows)
            return probabilities(self.package, rows)


mlflow.models.set_model(PackageModel())
