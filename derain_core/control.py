"""The benchmark control: a plain residual CNN with no attention and no multi-scale tricks.

It is not one of the five app models and is not in the registry; ``derain_core.train``
accepts the model id ``"control"`` for it. It answers "how much do the papers' ideas buy
over a plain CNN of similar size trained the same way?".

Structure: head conv 3->C, ``blocks`` residual blocks (conv-ReLU-conv + skip, C channels),
tail conv C->3 predicting the rain layer ``R``; output ``x - R``. With C=48 and 12 blocks it
has about 0.5M parameters.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .base import DerainNet, MapSpec, Recorder
from .losses import l1_output
from .recipes import Recipe, Schedule, TrainingSpec

CONTROL_ID = "control"
CONTROL_CONFIG: dict[str, Any] = {"channels": 48, "blocks": 12}
CONTROL_TEST_CONFIG: dict[str, Any] = {"channels": 16, "blocks": 2}
CONTROL_TRAINING = TrainingSpec(
    loss=l1_output,
    paper=Recipe(5e-4, Schedule("cosine", min_ratio=1e-6 / 5e-4), "L1",
                 source="choice: plain CNN control, Adam 5e-4 cosine to 1e-6"),
    short_lr=1e-3)  # training.md: the control reached 37.5 dB in 60 min with Adam 1e-3 cosine


class ResBlock(nn.Module):
    """EDSR-style residual block without normalisation: ``x + conv(relu(conv(x)))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class PlainCNN(DerainNet):
    """Plain residual CNN control (see module docstring); ``forward(x) = x - R(x)``."""

    card = None  # not registered: no card, size multiple 1, min size 16

    def __init__(self, channels: int = 48, blocks: int = 12):
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)

    def map_specs(self) -> list[MapSpec]:
        return [MapSpec("rain", "image", "Rain layer", "predicted rain residual R = input - output", 3)]

    def derain(self, x: torch.Tensor, rec: Recorder) -> torch.Tensor:
        f = torch.relu(self.head(x))
        rain = self.tail(self.body(f))
        rec("rain", rain)
        return x - rain


def create_control(**config: Any) -> PlainCNN:
    """Build the control with ``config`` overriding :data:`CONTROL_CONFIG`."""
    unknown = set(config) - set(CONTROL_CONFIG)
    if unknown:
        raise TypeError(f"control: unknown config keys {sorted(unknown)}; known: {sorted(CONTROL_CONFIG)}")
    return PlainCNN(**{**CONTROL_CONFIG, **config})


def load_control(path: str | Path) -> PlainCNN:
    """Load a control exported by ``derain_core.train`` (safetensors with its config in the metadata)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    model = create_control(**json.loads(meta.get("config", "{}")))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state, strict=True)
    return model.eval()
