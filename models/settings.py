"""The trainer's settings: the one copy of their defaults (the config's `train` section extends this class).

No torch here, so that the config loads (and a config error answers) without it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"  # the devices training and scoring run on


class TrainConfig(BaseModel):
    """Optimisation settings (BARS defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    learning_rate: float = Field(1e-3, gt=0)
    """Adam's learning rate."""
    batch_size: int = Field(4096, ge=1)
    """Rows per training step."""
    max_epochs: int = Field(100, ge=1)
    """Most epochs."""
    patience: int = Field(2, ge=1)
    """Epochs without a better valid AUC in a row before stopping."""
    min_delta: float = Field(0.0, ge=0, lt=1)
    """An epoch is better only when its valid AUC beats the best by more than this; a smaller gain is a miss (the lr decays, patience counts), though the best weights kept are still the best epoch's (FuxiCTR: 1e-6)."""
    lr_decay: float = Field(0.1, gt=0, le=1)
    """The learning rate is multiplied by this after each epoch without a better valid AUC."""
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    """The learning rate within training: constant, or annealed every step from `learning_rate` towards 0 over `max_epochs` epochs' steps, by a half cosine (Loshchilov & Hutter's SGDR without restarts) or linearly; the decay on a missed epoch multiplies on top. For a fixed number of epochs (one epoch over data seen once): a run stopped early never reaches the low rates."""
    embedding_regularizer: float = Field(0.0, ge=0)
    """L2 on every embedding table: λ/2 · Σ w² added to each step's loss (FuxiCTR's embedding_regularizer)."""
    embedding_optimizer: Literal["adam", "lazy_adam"] = "adam"
    """adam: one Adam over every parameter, each step moving every embedding row (BARS, FuxiCTR); lazy_adam: the embedding tables get sparse gradients and their own Adam (torch's SparseAdam: TensorFlow's LazyAdam, FBGEMM's fused Adam), which moves only the rows a batch looks up, much faster steps on large tables; needs embedding_regularizer 0 (a penalty over every row is a dense gradient)."""
    seed: int = 2021
    """Seed of weights and batch order."""
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    """auto (CUDA when present), cpu, cuda or cuda:N; cuda without one is an error."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 autocast on CUDA and on CPUs where bf16 matrix products run several times fp32's (AMX; AVX-512 BF16 on AMD, as Zen 4: a rule on the CPU flags, the same on every run), fp32 elsewhere; fp16 (with loss scaling) on CUDA only."""
    checkpoint_seconds: float = Field(600.0, gt=0)
    """Resume checkpoint interval inside an epoch."""

    @model_validator(mode="after")
    def _lazy_without_penalty(self) -> TrainConfig:
        if self.embedding_optimizer == "lazy_adam" and self.embedding_regularizer > 0:
            raise ValueError(
                "embedding_optimizer lazy_adam moves only looked-up rows; an embedding_regularizer over every row "
                "makes each step dense: set embedding_regularizer 0 with it"
            )
        return self
