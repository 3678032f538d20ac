"""Training recipes: learning-rate schedules, optimizer recipes and each network's training spec.

A network declares its :class:`TrainingSpec` on its card (``ModelCard.training``), beside the
network: the paper's loss, the paper's own recipe, and the peak learning rate of the
short-budget recipe that ``derain train`` uses by default (warm-up + cosine over the chunk,
gradient clipping, an EMA of the weights). ``derain_core.train`` reads nothing per model
from anywhere else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

LossFn = Callable[[dict[str, Any], Any], Any]  # (outputs of training_outputs, target) -> scalar loss


@dataclass(frozen=True)
class Schedule:
    """LR multiplier of the base LR at a step (0-based) of a ``total``-step run.

    ``kind``: ``"cosine"`` (to ``min_ratio``), ``"multistep"`` (x ``gamma`` at each fraction in
    ``milestones``) or ``"halving"`` (x0.5 every ``1/halvings`` of the run). A linear warm-up
    over the first ``warmup`` fraction of the steps multiplies all of them.
    """

    kind: str
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    min_ratio: float = 0.0
    halvings: int = 7
    warmup: float = 0.02

    def warmup_steps(self, total: int) -> int:
        return int(round(self.warmup * total))

    def __call__(self, step: int, total: int) -> float:
        total = max(int(total), 1)
        w = self.warmup_steps(total)
        warm = (step + 1) / w if step < w else 1.0
        if self.kind == "cosine":
            p = min(max((step - w) / max(total - w, 1), 0.0), 1.0)
            m = self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * p))
        elif self.kind == "multistep":
            m = self.gamma ** sum(step >= round(f * total) for f in self.milestones)
        elif self.kind == "halving":
            m = 0.5 ** math.floor(self.halvings * step / total)
        else:
            m = 1.0
        return warm * m

    def describe(self) -> str:
        warm = f"linear warm-up {self.warmup:.0%} of steps, then "
        if self.kind == "cosine":
            return warm + f"cosine to {self.min_ratio:g} x base"
        if self.kind == "multistep":
            at = "/".join(f"{f:.0%}" for f in self.milestones)
            return warm + f"x{self.gamma:g} at {at} of steps"
        if self.kind == "halving":
            return warm + f"halved every 1/{self.halvings} of the steps"
        return warm + "constant"


@dataclass(frozen=True)
class Recipe:
    """Optimizer recipe of one model (Adam), scaled to any step budget."""

    lr: float
    schedule: Schedule
    loss: str
    grad_clip: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    source: str = ""
    ema: float | None = None  # decay of an exponential moving average of the weights (None: off)


@dataclass(frozen=True)
class TrainingSpec:
    """How a network trains: the paper's ``loss`` (over ``training_outputs``), its ``paper`` recipe,
    and the short-budget recipe's peak learning rate (``short_lr``) and gradient clip."""

    loss: LossFn
    paper: Recipe
    short_lr: float
    short_clip: float = 1.0

    def short(self) -> Recipe:
        """The default recipe: Adam ``short_lr``, warm-up 2 % then cosine to 1 %, clipping, EMA 0.999."""
        lr, clip = self.short_lr, self.short_clip
        return Recipe(lr, Schedule("cosine", min_ratio=0.01, warmup=0.02), self.paper.loss, grad_clip=clip,
                      ema=0.999, source=f"short-budget recipe (training.md): Adam {lr:g}, warm-up 2% then cosine "
                      f"to 1% over the chunk, gradient-norm clip {clip:g}, EMA 0.999 (better of raw/EMA exported); "
                      f"paper: {self.paper.source}")

    def recipe(self, kind: str) -> Recipe:
        """``"short"`` (default) or ``"paper"``."""
        if kind == "short":
            return self.short()
        if kind == "paper":
            return self.paper
        raise ValueError(f"unknown recipe {kind!r}; choose from short, paper")
