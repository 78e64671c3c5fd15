"""Plots written next to stage outputs (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


def _pyplot():
    """matplotlib's pyplot on the headless backend, imported on first use (it takes a third of a second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


KIND_COLOURS = {"categorical": "#4C72B0", "numeric": "#DD8452", "multi": "#55A868"}


def ranking_bar_plot(ranking: pl.DataFrame, path: Path, top: int, score_name: str) -> None:
    """Horizontal bars of the top features by score, coloured by kind."""
    plt = _pyplot()
    head = ranking.head(top)
    fig, ax = plt.subplots(figsize=(8, 0.32 * head.height + 1.4))
    colours = [KIND_COLOURS.get(kind, "grey") for kind in head["kind"]]
    ax.barh(head["feature"].to_list()[::-1], head["score"].to_list()[::-1], color=colours[::-1])
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(f"score ({score_name})")
    ax.set_title(f"Top {head.height} features by cardinality-corrected MI")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLOURS.values()]
    ax.legend(handles, KIND_COLOURS.keys(), loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_curve_plot(epochs: list[int], train_loss: list[float], valid_auc: list[float], path: Path, title: str) -> None:
    """Train loss and validation AUC per epoch on twin axes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, train_loss, marker="o", color="#4C72B0", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="#4C72B0")
    other = ax.twinx()
    other.plot(epochs, valid_auc, marker="s", color="#DD8452", label="valid AUC")
    other.set_ylabel("valid AUC", color="#DD8452")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pareto_plot(
    points: list[tuple[float, float]], front: list[tuple[float, float]], chosen: tuple[float, float] | None, path: Path
) -> None:
    """Validation AUC against parameters for every finished trial, the Pareto front and the chosen trade-off."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if points:
        ax.scatter([p for p, _ in points], [a for _, a in points], color="#BBBBBB", label="trials")
    if front:
        ordered = sorted(front)
        ax.plot([p for p, _ in ordered], [a for _, a in ordered], marker="o", color="#4C72B0", label="Pareto front")
    if chosen:
        ax.scatter([chosen[0]], [chosen[1]], s=160, facecolors="none", edgecolors="#C44E52", linewidths=2, label="chosen")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation AUC")
    ax.set_title("Study: validation AUC against model size")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
