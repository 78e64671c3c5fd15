"""A toy search method for tests/test_method_registry.py: it learns one scale for the logits on valid and keeps it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from methods.base import Applied, Found, Method, Settings


class ToySettings(Settings):
    """The toy's settings."""

    scale: float = Field(0.5, gt=0)
    """The logit scale it applies."""


class Toy(Method):
    name = "toy"
    settings = ToySettings
    headline = ("scale", "valid_auc_after")
    applied_flag = "toy_scaled"

    def search(self, run, settings: ToySettings) -> Found:
        from models.trainer import fit

        self._attach(run.model, settings.scale)
        result = fit(run.model, run.train, run.valid, run.trainer)
        return Found({"scale": settings.scale, "valid_auc_after": result.best_valid_auc}, {"scale": settings.scale})

    def save(self, state: dict[str, Any], directory: Path) -> list[str]:
        (directory / "toy.state.json").write_text(json.dumps(state))
        return ["toy.state.json"]

    def load(self, directory: Path) -> dict[str, Any] | None:
        path = directory / "toy.state.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def apply(self, model, state, settings, spec, feature_map) -> Applied:
        self._attach(model, state["scale"])
        return Applied(model)

    def package_entry(self, settings, state) -> dict[str, Any]:
        return {"scale": state["scale"]}

    def restore(self, model, entry, spec, feature_map):
        self._attach(model, entry["scale"])
        return model

    def report_lines(self, summary: dict[str, Any]) -> list[str]:
        return [f"Toy scaled the logits by {summary['scale']}"]

    @staticmethod
    def _attach(model, scale: float) -> None:
        """A buffer in the state dict (so a package that lacks `restore` fails to load) and a hook that scales the output."""
        import torch

        model.register_buffer("toy_scale", torch.tensor(float(scale)))
        model.register_forward_hook(lambda module, args, output: output * module.toy_scale)
