"""Model size and cost, computed by code: parameters and multiply-accumulates (MACs)."""
from __future__ import annotations

import functools

import torch
from torch.utils.flop_counter import FlopCounterMode

from .base import reference_kernels
from .registry import create_model, get_card


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, height: int = 512, width: int = 512) -> int:
    """MACs of one forward pass (convolutions, matmuls, attention; FLOPs / 2).

    Counts the straightforward module code (:func:`~derain_core.base.reference_kernels`), the
    network as published, so the number does not depend on the fast path's shortcuts or
    padding. Runs on the device the model's parameters are on (``meta`` makes it free).
    """
    x = torch.zeros(1, 3, height, width, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), reference_kernels():
        model(x)
    return counter.get_total_flops() // 2


@functools.lru_cache(maxsize=None)
def model_stats(model_id: str, height: int = 512, width: int = 512, training: bool = False) -> dict[str, int]:
    """``{"params": ..., "macs": ...}`` for the default config of ``model_id``.

    Counted on the meta device (no memory, no time); a network whose forward pass needs
    real data at some size is counted on CPU instead. ``training``: the forward pass as
    training runs it (train mode: no inference-only border margin).
    """
    get_card(model_id)  # import the network modules outside the meta-device context
    with torch.device("meta"):
        model = create_model(model_id)
    params = count_params(model)
    try:
        macs = count_macs(model.train(training), height, width)
    except Exception:
        torch.manual_seed(0)
        macs = count_macs(create_model(model_id).train(training), height, width)
    return {"params": params, "macs": macs}
