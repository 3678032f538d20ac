"""Model size and cost, computed by code: parameters and multiply-accumulates (MACs)."""
from __future__ import annotations

import functools

import torch
from torch.utils.flop_counter import FlopCounterMode

from .registry import create_model


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, height: int = 512, width: int = 512) -> int:
    """MACs of one forward pass (convolutions, matmuls, attention; FLOPs / 2).

    Runs on the meta device when the model allows it (no memory, no time), else on CPU.
    """
    def run(m: torch.nn.Module, device: str) -> int:
        x = torch.zeros(1, 3, height, width, device=device)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            m(x)
        return counter.get_total_flops() // 2

    try:
        return run(model.to("meta"), "meta")
    except Exception:
        return run(model.to("cpu"), "cpu")


@functools.lru_cache(maxsize=None)
def model_stats(model_id: str, height: int = 512, width: int = 512) -> dict[str, int]:
    """``{"params": ..., "macs": ...}`` for the default config of ``model_id``."""
    with torch.device("meta"):
        model = create_model(model_id)
    params = count_params(model)
    return {"params": params, "macs": count_macs(model.eval(), height, width)}
