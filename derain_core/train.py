"""Training pipeline: paper losses and recipes, resumable checkpoints, best-by-validation, export.

Usage::

    python -m derain_core.train MODEL --data DIR (--steps N | --minutes M) [options]
    derain train MODEL ...            # the same arguments through the project CLI

``MODEL`` is a registered network id or ``control`` (the plain-CNN benchmark control).
A run writes into ``runs/<model>_<variant>/``: ``log.csv``, ``last*`` (resumable state),
``best.safetensors`` (best validation PSNR-Y) and, at the end, ``export/<model>_<variant>``
(``.safetensors`` + ``.json`` card, written by :func:`derain_core.weights.save_weights`).
Nothing is written into ``weights/``: the lead decides what ships.

``--synth heavy`` (or light/storm) trains on synthetic rain rendered on the fly over the training
pairs' clean images (:class:`derain_core.data.SyntheticRainPatches`; ``--synth-mix F``: fraction of
real pairs), validates on a fixed synthetic split of the held-out clean images
(:func:`derain_core.data.make_synthetic_val`) and names the variant after the rain kind.

Checkpoints contain no pickle: model weights and optimizer/RNG tensors are safetensors files,
scalars (step, schedule, best score, config) are JSON.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import re
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from . import metrics as M
from . import settings
from .base import compiled_blocks, reference_kernels
from .metrics import quantize8
from .engine import cpu_has_native_bf16, cpu_matrix_isa, resolve_device, tune_cpu_allocator
from .control import CONTROL_CONFIG, CONTROL_ID, CONTROL_TEST_CONFIG, CONTROL_TRAINING, create_control
from .recipes import LossFn, Recipe, Schedule, TrainingSpec  # noqa: F401 (Schedule: re-exported)
from .synth import describe_generator, synth_variant
from .data import (SYNTH_KINDS, PairedPatches, SyntheticRainPatches, center_crop, check_identity_fraction, find_pairs,
                   load_rgb_uint8, load_validation, make_synthetic_val, split_pairs, to_float)



# ------------------------------------------------------------------------------------------
# Losses and recipes: declared by each network on its card (ModelCard.training, recipes.py)
# ------------------------------------------------------------------------------------------
TIME_SCHEDULE_STEPS = 100_000  # --minutes runs: LR schedule resolution over the time budget
RECIPE_KINDS = ("short", "paper")


def training_spec(model_id: str) -> TrainingSpec:
    """The :class:`TrainingSpec` a network declares (the control's for ``"control"``)."""
    if model_id == CONTROL_ID:
        return CONTROL_TRAINING
    from .registry import get_card, model_ids

    if model_id not in model_ids():
        raise ValueError(f"unknown model {model_id!r}; trainable: {', '.join([*model_ids(), CONTROL_ID])}")
    spec = get_card(model_id).training
    if spec is None:
        raise ValueError(f"{model_id} declares no training recipe (ModelCard.training)")
    return spec


def trainable_ids() -> list[str]:
    """Every registered network with a training spec, and the control."""
    from .registry import list_models

    return [c.id for c in list_models() if c.training is not None] + [CONTROL_ID]


def loss_for(model_id: str) -> LossFn:
    """The paper's training loss of ``model_id`` (over its ``training_outputs``)."""
    return training_spec(model_id).loss


def recipe_for(model_id: str, kind: str = "short") -> Recipe:
    """``model_id``'s ``"short"`` (default, short-budget) or ``"paper"`` recipe."""
    return training_spec(model_id).recipe(kind)


def lr_at(model_id: str, step: int, total: int, base_lr: float | None = None, kind: str = "short") -> float:
    """Learning rate of ``model_id``'s recipe (default: the short-budget one) at ``step`` of ``total``."""
    recipe = recipe_for(model_id, kind)
    return (base_lr or recipe.lr) * recipe.schedule(step, total)


# ------------------------------------------------------------------------------------------
# Validation metrics (Y channel of ITU-R BT.601, 0..255, outputs quantised to uint8)
# ------------------------------------------------------------------------------------------
def psnr_y(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR on Y (BT.601) of the 8-bit-quantised images, mean over the batch; capped at 100 dB."""
    return min(M.psnr_torch(quantize8(pred), quantize8(target), on="y").mean().item(), 100.0)


def ssim_y(pred: torch.Tensor, target: torch.Tensor) -> float:
    """SSIM on Y (Wang et al.: 11x11 Gaussian, sigma 1.5, valid windows) of the 8-bit-quantised images."""
    return M.ssim_torch(quantize8(pred), quantize8(target), on="y").mean().item()


# A network whose output differs from its input by less than a tenth of an 8-bit level on
# average has collapsed to the identity (e.g. every ReLU before its output layer died under the
# L1 loss, so only the output bias still learns): training it further cannot recover.
COLLAPSE_CHANGE = 0.1 / 255


@torch.no_grad()
def validate(model: nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
             channels_last: bool = False, with_change: bool = False) -> tuple[float, ...]:
    """Mean (PSNR-Y, SSIM-Y) of ``model`` (fp32, eval mode) over validation pairs; with
    ``with_change`` also the mean absolute change the model makes to its input."""
    was_training = model.training
    model.eval()
    psnrs, ssims, changes = [], [], []
    for rainy, clean in val:
        x = rainy.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x).float().cpu()
        psnrs.append(psnr_y(out, clean))
        ssims.append(ssim_y(out, clean))
        changes.append((out.clamp(0, 1) - rainy).abs().mean().item())
    model.train(was_training)
    scores = (sum(psnrs) / len(psnrs), sum(ssims) / len(ssims))
    return (*scores, sum(changes) / len(changes)) if with_change else scores


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything one training run needs (see ``python -m derain_core.train --help``)."""

    model: str
    data: str | None = None  # None: ../shared/data/Rain100L_train if it exists
    steps: int | None = None
    minutes: float | None = None
    batch: int = 16
    patch: int = 64
    lr: float | None = None  # None: the recipe's base LR
    val_every: int = 500  # 0: validate only at the end
    val_count: int = 10  # validation pairs carved out of the training set
    val_crop: int = 256  # center crop of validation images (0: full images)
    save_every: int = 0  # 0: save `last` at every validation
    log_every: int = 10
    seed: int = 0
    out: str | None = None  # None: runs/<model>_<variant>
    variant: str | None = None  # None: from the data folder name
    export_dir: str | None = None  # None: <out>/export
    resume: bool = False
    overwrite: bool = False
    init: str | None = None  # a weights .safetensors file to start from
    device: str = "auto"
    threads: int | None = None
    bf16: bool | None = None  # None: auto
    channels_last: bool = True
    model_config: dict[str, Any] = field(default_factory=dict)
    tiny: bool = False  # start from the card's test_config (tests, smoke runs)
    flips: bool = True
    progress: bool = True
    stop_at: int | None = None  # pause (resumably) once this step is reached
    synth: str = "none"  # none | light | heavy | storm: synthetic rain over the clean images
    synth_mix: float = 0.0  # with synth: fraction of samples taken from the real pairs
    identity_mix: float = 0.0  # fraction of samples that are identity pairs (clean in, clean out)
    recipe: str = "short"  # short (warm-up + cosine, clip, EMA) | paper (the papers' schedules)
    compile: bool = False  # torch.compile the forward, loss and backward (see compiled_loss)
    compile_blocks: bool | None = None  # compiled block kernels (base.compiled_blocks); None: on CPU
    reference_kernels: bool = False  # train on the blocks' plain reference code (the path before the speed work)


@dataclass
class TrainResult:
    """What a run did."""

    out_dir: Path
    step: int
    total_steps: int
    stopped: str  # "done" | "time" | "interrupt" | "paused" (stop_at)
    best_val_psnr_y: float | None
    best_step: int | None
    sec_per_step: float | None
    export_path: Path | None
    config: dict[str, Any]


def bf16_available(device: torch.device) -> bool:
    """Whether bf16 autocast is native on ``device`` (CUDA with bf16, or a CPU with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def device_description(device: torch.device) -> str:
    """Human-readable device name: GPU name, or the CPU model name with its matrix instructions
    (:func:`~derain_core.engine.cpu_matrix_isa`), e.g. ``Intel(R) Xeon(R) Processor (AMX)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({cpu_matrix_isa()})"


def default_data_dir() -> Path | None:
    """``../shared/data/Rain100L_train`` relative to the working dir or the repository."""
    here = Path(__file__).resolve().parent.parent
    for cand in (Path("../shared/data/Rain100L_train"), here.parent / "shared" / "data" / "Rain100L_train"):
        if cand.is_dir():
            return cand
    return None


def default_variant(data_dir: Path) -> str:
    """Variant name from the data folder: ``Rain100L_train`` -> ``rain100l``."""
    name = re.sub(r"[-_]?train(ing)?$", "", data_dir.resolve().name.lower())
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "custom"


def model_base_config(model_id: str, tiny: bool = False) -> dict[str, Any]:
    """The config a run starts from: the card's (or control's) test_config when ``tiny``."""
    if model_id == CONTROL_ID:
        return dict(CONTROL_TEST_CONFIG) if tiny else {}
    from .registry import get_card

    return dict(get_card(model_id).test_config) if tiny else {}


def build_model(model_id: str, config: dict[str, Any]) -> nn.Module:
    """A fresh network (control or registered) with ``config`` overriding its defaults."""
    if model_id == CONTROL_ID:
        return create_control(**config)
    from .registry import create_model

    return create_model(model_id, **config)


def full_config(model_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``config`` (what rebuilds the network)."""
    if model_id == CONTROL_ID:
        return {**CONTROL_CONFIG, **config}
    from .registry import get_card

    return {**get_card(model_id).default_config, **config}


def _file_config(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta.get("config", "{}"))


# ------------------------------------------------------------------------------------------
# Checkpoints (safetensors + JSON, never pickle)
# ------------------------------------------------------------------------------------------
def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_model_file(model: nn.Module, path: Path, model_id: str, config: dict[str, Any], step: int) -> None:
    """fp32 weights with the model config and step in the safetensors metadata (atomic)."""
    tmp = path.with_name(path.name + ".tmp")
    save_file(_state_tensors(model), str(tmp), metadata={
        "model_id": model_id, "config": json.dumps(config, sort_keys=True), "step": str(step)})
    os.replace(tmp, path)


def load_model_file(model: nn.Module, path: Path) -> None:
    """Load a safetensors state dict (any float dtype) into ``model`` (strict)."""
    state = load_file(str(path))
    ref = model.state_dict()
    state = {k: v.to(ref[k].dtype) if k in ref and v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)


def optimizer_to_safe(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors and JSON-able scalars."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars["state"].setdefault(str(idx), {})[k] = v
    return tensors, scalars


def optimizer_from_safe(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        scalars: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_to_safe`."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, st in scalars.get("state", {}).items():
        state.setdefault(int(idx), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})
    params = [p for g in opt.param_groups for p in g["params"]]
    for p in params:  # keep moment buffers in the parameter's memory format (channels_last)
        st = opt.state.get(p, {})
        for k, v in st.items():
            if torch.is_tensor(v) and v.shape == p.shape and v.dim() > 0:
                st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def _paths(out: Path) -> dict[str, Path]:
    return {"last": out / "last.safetensors", "state": out / "last_state.safetensors",
            "json": out / "last_state.json", "best": out / "best.safetensors",
            "best_json": out / "best.json", "log": out / "log.csv", "ema": out / "last_ema.safetensors"}


def save_last(out: Path, model: nn.Module, opt: torch.optim.Optimizer, data: PairedPatches | SyntheticRainPatches,
              device: torch.device, scalars: dict[str, Any], model_id: str, config: dict[str, Any],
              ema: Ema | None = None) -> None:
    """Write the resumable ``last`` checkpoint: weights (and EMA), optimizer + RNG tensors, JSON scalars."""
    p = _paths(out)
    step = scalars["step"]
    save_model_file(model, p["last"], model_id, config, step)
    if ema is not None:
        save_model_file(ema.model, p["ema"], model_id, config, step)
    tensors, opt_scalars = optimizer_to_safe(opt)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.data"] = data.get_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    tmp = p["state"].with_name(p["state"].name + ".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step)})
    os.replace(tmp, p["state"])
    tmp = p["json"].with_name(p["json"].name + ".tmp")
    tmp.write_text(json.dumps({**scalars, "optimizer": opt_scalars}, indent=1) + "\n")
    os.replace(tmp, p["json"])


def _meta_step(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return int((f.metadata() or {}).get("step", -1))


# ------------------------------------------------------------------------------------------
# Log
# ------------------------------------------------------------------------------------------
LOG_FIELDS = ("step", "elapsed_s", "lr", "loss", "val_psnr_y", "val_ssim_y", "grad_norm", "ema_val_psnr_y",
              "ema_val_ssim_y", "skipped")


class CsvLog:
    """``log.csv`` writer; on resume, rows after the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= resume_step]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def write(self, step: int, elapsed_s: float, lr: float, loss: float | None,
              val_psnr_y: float | None = None, val_ssim_y: float | None = None, grad_norm: float | None = None,
              ema_val: tuple[float, float] | None = None, skipped: int = 0) -> None:
        def fmt(v, spec):
            return "" if v is None else format(v, spec)

        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([step, f"{elapsed_s:.1f}", f"{lr:.4g}", fmt(loss, ".6f"),
                                    fmt(val_psnr_y, ".3f"), fmt(val_ssim_y, ".4f"), fmt(grad_norm, ".4g"),
                                    fmt(ema_val and ema_val[0], ".3f"), fmt(ema_val and ema_val[1], ".4f"),
                                    skipped])


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------
def make_optimizer(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam as every training run (and the training benchmark) uses it: the fused
    implementation on CPU and CUDA (one kernel over all parameters instead of one per tensor;
    see ``Optimizer.step`` in ``results/profiles/``), the plain one elsewhere."""
    params = list(params)
    fused = bool(params) and params[0].device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None)


def compute_loss(model: nn.Module, loss_fn: LossFn, rainy: torch.Tensor, clean: torch.Tensor,
                 autocast: Any) -> torch.Tensor:
    """Forward under ``autocast`` (e.g. bf16), then the loss in fp32 outside it."""
    with autocast:
        outs = model.training_outputs(rainy)
    outs = {k: v.float() for k, v in outs.items()}
    return loss_fn(outs, clean.float())


def compiled_loss(model: nn.Module, loss_fn: LossFn, device_type: str, bf16: bool
                  ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """:func:`compute_loss` for ``model`` under ``torch.compile`` (``derain train --compile``).

    Forward and loss are traced once (the first call compiles, for a minute or more on a CPU);
    AOTAutograd compiles the backward with them. Validation keeps using the eager module.
    """
    def loss(rainy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16)
        return compute_loss(model, loss_fn, rainy, clean, autocast)

    return torch.compile(loss)


class _StopFlag:
    """Sets ``stop`` on SIGINT/SIGTERM while active (main thread only); a second SIGINT aborts."""

    def __init__(self):
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _fp16_check_psnr(model: nn.Module, x: torch.Tensor) -> float:
    """PSNR (dB, peak 1) between outputs with fp32 weights and with fp16-rounded weights (CPU)."""
    model = model.cpu().float().eval()
    with torch.no_grad():
        ref = model(x).float()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        rounded = {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}
        model.load_state_dict(rounded)
        out = model(x).float()
        model.load_state_dict(state)
    return min(M.psnr_torch(ref.double(), out.double()).min().item(), 200.0)


class Ema:
    """Exponential moving average of a model's floating-point parameters and buffers.

    BatchNorm's running statistics are averaged like the weights (as timm's ``ModelEmaV2``
    does): copied from the live model they described other weights than the averaged ones,
    and the averaged model's validation jumped by up to 1.3 dB between checks (RRANet).
    Integer buffers (``num_batches_tracked``) are copied.

    ``decay`` ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates so that an
    average started from fresh weights follows them quickly.
    """

    def __init__(self, model: nn.Module, decay: float):
        import copy

        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_p = [p for p in self.model.parameters()]
        src_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, src_p, 1.0 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            if b.is_floating_point():
                b_ema.lerp_(b, 1.0 - d)
            else:
                b_ema.copy_(b)

    @torch.no_grad()
    def reset_to(self, model: nn.Module) -> None:
        """Restart the average at ``model``'s weights."""
        self.model.load_state_dict(model.state_dict())
        self.updates = 0


def grad_norm_(params: list[torch.Tensor], max_norm: float | None) -> float:
    """Total gradient L2 norm (float32); clips to ``max_norm`` when given and the norm is finite."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    value = float(norm)
    if max_norm and math.isfinite(value) and value > max_norm:
        torch._foreach_mul_(grads, max_norm / (value + 1e-6))
    return value


MAX_ROLLBACKS = 3  # a run that diverges more often than this stops and exports its best checkpoint


def _check_config(cfg: TrainConfig) -> None:
    """Reject impossible configurations with a one-line reason."""
    training_spec(cfg.model)  # raises for an unknown model
    if (cfg.steps is None) == (cfg.minutes is None) and not cfg.resume:
        raise ValueError("give exactly one of steps or minutes")
    if cfg.recipe not in RECIPE_KINDS:
        raise ValueError(f"unknown recipe {cfg.recipe!r}; choose from {', '.join(RECIPE_KINDS)}")
    if cfg.synth not in ("none", *SYNTH_KINDS):
        raise ValueError(f"unknown synth {cfg.synth!r}; choose from none, {', '.join(SYNTH_KINDS)}")
    if not 0.0 <= cfg.synth_mix <= 1.0:
        raise ValueError(f"synth_mix must be in [0, 1], got {cfg.synth_mix}")
    if cfg.synth_mix and cfg.synth == "none":
        raise ValueError("synth_mix needs synth (light, heavy or storm)")
    check_identity_fraction(cfg.identity_mix)


def _read_resume_state(cfg: TrainConfig, out: Path, paths: dict[str, Path]) -> dict[str, Any]:
    """The JSON scalars of the checkpoint in ``out``, checked against ``cfg``."""
    if not paths["json"].is_file():
        raise FileNotFoundError(f"--resume: no checkpoint in {out} ({paths['json'].name} missing)")
    saved = json.loads(paths["json"].read_text())
    if saved["model_id"] != cfg.model:
        raise ValueError(f"--resume: checkpoint in {out} is for {saved['model_id']!r}, not {cfg.model!r}")
    steps_meta = {_meta_step(paths["last"]), _meta_step(paths["state"]), saved["step"]}
    if len(steps_meta) != 1:
        raise RuntimeError(f"--resume: inconsistent checkpoint files in {out} (steps {sorted(steps_meta)})")
    # runs from before --synth / --identity-mix
    before = {"synth": "none", "synth_mix": 0.0, "identity_mix": 0.0, **saved.get("run_config", {})}
    for key in ("seed", "val_count", "synth", "synth_mix", "identity_mix"):
        if key in before and before[key] != getattr(cfg, key):
            why = ("it fixes the validation split" if key in ("seed", "val_count", "synth")
                   else "it fixes the training data")
            raise ValueError(f"--resume: {key} was {before[key]} ({why}), now {getattr(cfg, key)}")
    return saved


class Trainer:
    """One training run, in four parts: :meth:`__init__` prepares (and resumes), :meth:`loop`
    trains until the budget, a pause or a stop, :meth:`finish` validates and checkpoints the end,
    :meth:`export` writes the best weights and their card. :func:`train` runs them in order."""

    def __init__(self, cfg: TrainConfig):
        _check_config(cfg)
        self.cfg, self.model_id = cfg, cfg.model
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            tune_cpu_allocator()  # freed activations stay in the heap: no page faults on the next step
        self.use_bf16 = bf16_available(self.device) if cfg.bf16 is None else bool(cfg.bf16)
        if self.use_bf16 and self.device.type == "cpu" and not cpu_has_native_bf16():
            print("warning: bf16 autocast requested on a CPU without native bf16 (slow)", file=sys.stderr)
        self.recipe = recipe_for(cfg.model, cfg.recipe)
        self.loss_fn = loss_for(cfg.model)
        self.synth_on = cfg.synth != "none"
        data_dir = Path(cfg.data) if cfg.data else default_data_dir()
        if data_dir is None:
            raise FileNotFoundError("no --data given and ../shared/data/Rain100L_train not found")
        self.data_dir = data_dir
        self.variant = cfg.variant or (synth_variant(cfg.synth) if self.synth_on else default_variant(data_dir))
        self.out = Path(cfg.out) if cfg.out else Path("runs") / f"{cfg.model}_{self.variant}"
        self.export_dir = Path(cfg.export_dir) if cfg.export_dir else self.out / "export"
        self.paths = _paths(self.out)
        saved = _read_resume_state(cfg, self.out, self.paths) if cfg.resume else None
        if saved is None and self.paths["json"].is_file() and not cfg.overwrite:
            raise FileExistsError(f"{self.out} already holds a run; use resume, another out/variant, or overwrite")
        self.model_config = saved["model_config"] if saved is not None else self._new_model_config()
        self.config = full_config(cfg.model, self.model_config)
        self.train_pairs, self.val_pairs = split_pairs(find_pairs(data_dir), cfg.val_count, cfg.seed)
        self._build()
        # run state (checkpointed by save_last)
        self.step, self.total, self.fixed = 0, cfg.steps, cfg.steps is not None
        self.elapsed_before = 0.0
        self.best_psnr = self.best_ssim = self.best_step = None
        self.best_source, self.last_ema_val = "raw", None
        self.lr_scale, self.rollbacks, self.skipped = 1.0, 0, 0
        self.skipped_loss = 0  # of the skipped steps, those whose loss was already not finite (else: the gradient)
        self.collapsed, self.last_change = False, None
        if saved is not None:
            self._resume(saved)
        self.start_step = self.step
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = CsvLog(self.paths["log"], resume_step=self.step if saved is not None else None)
        self.budget = cfg.minutes * 60.0 if cfg.minutes is not None else None
        self.val_every = cfg.val_every if cfg.val_every > 0 else 0
        self.save_every = cfg.save_every or self.val_every
        self.step_times: list[float] = []
        self.stopped = "done"
        self.lr = self.base_lr
        self.t_start = time.monotonic()

    # ---- preparing
    def _new_model_config(self) -> dict[str, Any]:
        """Tiny/test config, the --init file's config, and explicit overrides, in that order."""
        cfg = self.cfg
        model_config = model_base_config(cfg.model, cfg.tiny)
        if cfg.init and not cfg.model_config and not cfg.tiny:
            model_config = _file_config(Path(cfg.init))
        return {**model_config, **cfg.model_config}

    def _build(self) -> None:
        """Network (from --init when given), optimizer, EMA, training data and validation set."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, self.model_config)
        if cfg.init and not cfg.resume:
            load_model_file(self.model, Path(cfg.init))
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.base_lr = cfg.lr or self.recipe.lr
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = make_optimizer(self.params, self.base_lr, self.recipe.betas)
        self.ema = Ema(self.model, self.recipe.ema) if self.recipe.ema else None
        if self.synth_on:
            self.data: PairedPatches | SyntheticRainPatches = SyntheticRainPatches(
                self.train_pairs, cfg.patch, kind=cfg.synth, mix=cfg.synth_mix, flips=cfg.flips, seed=cfg.seed,
                identity=cfg.identity_mix)
            self.val = make_synthetic_val(self.val_pairs, len(self.val_pairs), cfg.val_crop, cfg.synth, cfg.seed)
        else:
            self.data = PairedPatches(self.train_pairs, cfg.patch, flips=cfg.flips, seed=cfg.seed,
                                      identity=cfg.identity_mix)
            self.val = load_validation(self.val_pairs, cfg.val_crop) if self.val_pairs else []
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.use_bf16
                         else torch.autocast(self.device.type, enabled=False))
        self.compiled = (compiled_loss(self.model, self.loss_fn, self.device.type, self.use_bf16)
                         if cfg.compile else None)
        self.compile_blocks = (self.device.type == "cpu" if cfg.compile_blocks is None
                               else cfg.compile_blocks) and not cfg.compile and not cfg.reference_kernels

    def _resume(self, saved: dict[str, Any]) -> None:
        """Weights, EMA, optimizer, RNG streams and run state from the ``last`` checkpoint."""
        cfg, paths = self.cfg, self.paths
        load_model_file(self.model, paths["last"])
        st = load_file(str(paths["state"]))
        optimizer_from_safe(self.opt, st, saved["optimizer"])
        torch.set_rng_state(st["rng.torch"])
        self.data.set_state(st["rng.data"])
        if self.device.type == "cuda" and "rng.cuda" in st:
            torch.cuda.set_rng_state(st["rng.cuda"], self.device)
        self.step, self.elapsed_before = saved["step"], saved["elapsed_s"]
        if self.ema is not None:
            if paths["ema"].is_file():
                load_model_file(self.ema.model, paths["ema"])
                self.ema.updates = int(saved.get("ema_updates", self.step))
            else:
                self.ema.reset_to(self.model)
        self.lr_scale = saved.get("lr_scale", 1.0)
        self.rollbacks, self.skipped = saved.get("rollbacks", 0), saved.get("skipped_steps", 0)
        self.skipped_loss = saved.get("skipped_nonfinite_loss", 0)
        self.best_psnr, self.best_ssim = saved["best_psnr_y"], saved["best_ssim_y"]
        self.best_step, self.best_source = saved["best_step"], saved.get("best_source", "raw")
        if cfg.steps is not None:
            self.total, self.fixed = cfg.steps, True
        elif saved["total_fixed"]:
            self.total, self.fixed = saved["total_steps"], True
        else:
            self.total, self.fixed = None, False
        if not self.fixed and cfg.minutes is None:
            raise ValueError("--resume of a run whose step count was never fixed needs steps or minutes")

    # ---- state
    def elapsed(self) -> float:
        """Training seconds so far, earlier sessions of the run included (not setup time)."""
        return self.elapsed_before + time.monotonic() - self.t_start

    def scalars(self) -> dict[str, Any]:
        """The JSON part of the ``last`` checkpoint."""
        return {"version": 1, "model_id": self.model_id, "model_config": self.model_config,
                "variant": self.variant, "step": self.step, "total_steps": self.total,
                "total_fixed": self.fixed, "elapsed_s": round(self.elapsed(), 2), "best_psnr_y": self.best_psnr,
                "best_ssim_y": self.best_ssim, "best_step": self.best_step, "best_source": self.best_source,
                "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "skipped_steps": self.skipped,
                "skipped_nonfinite_loss": self.skipped_loss, "ema_updates": self.ema.updates if self.ema is not None else 0,
                "run_config": {k: v for k, v in asdict(self.cfg).items() if k not in ("resume", "overwrite")}}

    def save(self) -> None:
        save_last(self.out, self.model, self.opt, self.data, self.device, self.scalars(), self.model_id,
                  self.config, self.ema)

    def validate(self) -> tuple[float | None, float | None]:
        """Validate the raw weights (and the EMA); keep the better as ``best``. Returns the raw score."""
        if not self.val:
            return None, None
        p, s, change = validate(self.model, self.val, self.device, self.cfg.channels_last, with_change=True)
        self.last_change = change
        if change < COLLAPSE_CHANGE:
            self.collapsed = True
            print(f"warning: at step {self.step} the network's output equals its input (mean change "
                  f"{change * 255:.3f}/255): it has collapsed to the identity and cannot learn further; "
                  "stopping. Start from fresh weights or a lower learning rate.", file=sys.stderr)
        candidates = [(p, s, "raw", self.model)]
        self.last_ema_val = None
        if self.ema is not None:
            ep, es = validate(self.ema.model, self.val, self.device, self.cfg.channels_last)
            self.last_ema_val = (ep, es)
            candidates.append((ep, es, "ema", self.ema.model))
        cp, cs, src, net = max(candidates, key=lambda c: c[0])
        if self.best_psnr is None or cp > self.best_psnr:
            self.best_psnr, self.best_ssim, self.best_step, self.best_source = cp, cs, self.step, src
            save_model_file(net, self.paths["best"], self.model_id, self.config, self.step)
            self.paths["best_json"].write_text(json.dumps(
                {"step": self.step, "val_psnr_y": cp, "val_ssim_y": cs, "source": src}, indent=1) + "\n")
        return p, s

    # ---- the loop
    def _stop_reason(self, flag: "_StopFlag") -> str | None:
        cfg = self.cfg
        if self.fixed and self.step >= self.total:
            return "done"
        if flag.stop:
            return "interrupt"
        if self.collapsed:
            return "collapsed"
        if cfg.stop_at is not None and self.step >= cfg.stop_at:
            return "paused"
        if self.budget is not None and self.elapsed() >= self.budget:
            return "time" if self.fixed else "done"  # a --minutes run ends when its time is up
        return None

    def _set_lr(self) -> None:
        if self.fixed:
            self.lr = self.base_lr * self.lr_scale * self.recipe.schedule(self.step, self.total)
        else:  # --minutes: the schedule follows the fraction of the wall-time budget spent
            frac = min(self.elapsed() / self.budget, 1.0)
            self.lr = self.base_lr * self.lr_scale * self.recipe.schedule(int(frac * TIME_SCHEDULE_STEPS),
                                                                          TIME_SCHEDULE_STEPS)
        for g in self.opt.param_groups:
            g["lr"] = self.lr

    def _optimizer_step(self) -> tuple[float, float] | None:
        """One batch: ``(loss, grad norm)``, or None when the loss or gradient is not finite (skipped)."""
        rainy, clean = self.data.batch(self.cfg.batch)
        rainy, clean = rainy.to(self.device), clean.to(self.device)
        if self.cfg.channels_last:
            rainy = rainy.contiguous(memory_format=torch.channels_last)
        with compiled_blocks(self.compile_blocks), reference_kernels(self.cfg.reference_kernels):
            if self.compiled is not None:
                loss = self.compiled(rainy, clean)
            else:
                loss = compute_loss(self.model, self.loss_fn, rainy, clean, self.autocast)
            self.opt.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                self.skipped_loss += 1
                return None
            loss.backward()
        gnorm = grad_norm_(self.params, self.recipe.grad_clip)
        if not math.isfinite(gnorm):
            self.opt.zero_grad(set_to_none=True)
            return None
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.item(), gnorm

    def _roll_back(self, bad: int) -> bool:
        """After ``bad`` non-finite steps in a row: back to the best weights with half the LR.
        False when the rollbacks are used up (the run stops)."""
        if self.rollbacks >= MAX_ROLLBACKS or not self.paths["best"].is_file():
            print(f"warning: {bad} non-finite steps in a row at step {self.step} after {self.rollbacks} "
                  "rollbacks; stopping (the best validated checkpoint is exported)", file=sys.stderr)
            return False
        self.rollbacks += 1
        self.lr_scale *= 0.5
        print(f"warning: {bad} non-finite steps in a row at step {self.step}; rolling back to the best "
              f"checkpoint (step {self.best_step}) with LR x{self.lr_scale:g} (rollback {self.rollbacks})",
              file=sys.stderr)
        load_model_file(self.model, self.paths["best"])
        self.opt = make_optimizer(self.params, self.base_lr * self.lr_scale, self.recipe.betas)
        if self.ema is not None:
            self.ema.reset_to(self.model)
        return True

    def loop(self) -> None:
        """Train until the step count, the time budget, ``stop_at``, a signal or divergence."""
        from tqdm import tqdm

        cfg = self.cfg
        loss_sum, loss_n, gnorm_sum, bad = 0.0, 0, 0.0, 0
        self.last_val_step = -1
        self.model.train()
        bar = tqdm(total=self.total, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not cfg.progress, desc=self.model_id)
        self.t_start = time.monotonic()  # the budget counts training, not building and data loading
        with _StopFlag() as flag:
            while (reason := self._stop_reason(flag)) is None:
                t0 = time.perf_counter()
                self._set_lr()
                result = self._optimizer_step()
                if result is not None:  # applied; a non-finite step is skipped, never applied
                    bad = 0
                    loss_sum, loss_n, gnorm_sum = loss_sum + result[0], loss_n + 1, gnorm_sum + result[1]
                else:
                    bad, self.skipped = bad + 1, self.skipped + 1
                    if bad >= 10:
                        if not self._roll_back(bad):
                            reason = "diverged"
                            break
                        bad = 0
                self.step += 1
                self.step_times.append(time.perf_counter() - t0)
                bar.update(1)
                vp = vs = None
                due = (self.val_every and self.step % self.val_every == 0) or (self.fixed and self.step >= self.total)
                if due and self.step != self.last_val_step:
                    vp, vs = self.validate()
                    self.last_val_step = self.step
                if self.step % cfg.log_every == 0 or vp is not None:
                    self.log.write(self.step, self.elapsed(), self.lr, loss_sum / loss_n if loss_n else None, vp, vs,
                                   gnorm_sum / loss_n if loss_n else None,
                                   self.last_ema_val if vp is not None else None, self.skipped)
                    bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}" if loss_n else "nan", lr=f"{self.lr:.2g}",
                                    **({"val": f"{vp:.2f}"} if vp is not None else {}))
                    loss_sum, loss_n, gnorm_sum = 0.0, 0, 0.0
                if self.save_every and self.step % self.save_every == 0:
                    self.save()
            self.stopped = reason
            self._pending_log = (loss_sum, loss_n, gnorm_sum)
            self.finish()
        bar.close()

    def finish(self) -> None:
        """Validate the final weights (time-out, interrupt) and write the ``last`` checkpoint."""
        loss_sum, loss_n, gnorm_sum = getattr(self, "_pending_log", (0.0, 0, 0.0))
        if self.step != self.last_val_step and self.step > self.start_step and self.stopped != "paused":
            vp, vs = self.validate()
            self.last_val_step = self.step
            self.log.write(self.step, self.elapsed(), self.lr, loss_sum / loss_n if loss_n else None, vp, vs,
                           gnorm_sum / loss_n if loss_n else None, self.last_ema_val, self.skipped)
        if self.total is None:
            self.total = self.step
        self.save()

    # ---- export
    def median_step_s(self, include_first: bool = False) -> float | None:
        times = self.step_times[1:]
        if times:
            return sorted(times)[len(times) // 2]
        return self.step_times[0] if include_first and self.step_times else None

    def export(self) -> Path | None:
        """The best weights (fp16 if outputs stay within 50 dB of fp32) and their card, or None
        when no step was trained."""
        from .weights import save_weights

        if self.step <= 0:
            return None
        best = build_model(self.model_id, self.model_config)
        src = self.paths["best"] if (self.val and self.paths["best"].is_file()) else self.paths["last"]
        load_model_file(best, src)
        x = self.val[0][0] if self.val else to_float(center_crop(load_rgb_uint8(self.train_pairs[0][0]), 256))[None]
        fp16_psnr = _fp16_check_psnr(best, x)
        return save_weights(best, self.model_id, self.variant, self.config, self._card(fp16_psnr),
                            half=fp16_psnr >= 50.0, directory=self.export_dir)

    def _card(self, fp16_psnr: float) -> dict[str, Any]:
        """Provenance of this chunk for the weight card (scripts/ship_weights.py adds the history)."""
        from .weights import sha256_of

        cfg, recipe, val = self.cfg, self.recipe, bool(self.val)
        per_step = self.median_step_s(include_first=True)
        init = Path(cfg.init) if cfg.init else None
        card = {
            "training_data": _training_data_text(cfg, self.data_dir, len(self.train_pairs), len(self.val_pairs)),
            "data_dir": str(self.data_dir),
            "steps": self.step, "total_steps": self.total, "batch": cfg.batch, "patch": cfg.patch,
            "augmentation": _augmentation_text(cfg),
            "loss": recipe.loss, "optimizer": f"Adam betas {recipe.betas}, lr {self.base_lr:g}",
            "schedule": recipe.schedule.describe(), "grad_clip": recipe.grad_clip, "recipe": cfg.recipe,
            "ema_decay": recipe.ema, "best_source": self.best_source if val else "raw",
            "skipped_steps": self.skipped, "skipped_nonfinite_loss": self.skipped_loss, "rollbacks": self.rollbacks,
            "recipe_source": recipe.source, "seed": cfg.seed,
            "device": device_description(self.device), "device_type": self.device.type,
            "threads": torch.get_num_threads(), "bf16_autocast": self.use_bf16,
            "channels_last": cfg.channels_last, "torch_compile": cfg.compile,
            "compiled_blocks": self.compile_blocks, "reference_kernels": cfg.reference_kernels,
            "malloc_hugepages": "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", ""),
            "wall_time_s": round(self.elapsed(), 1),
            "sec_per_step": None if per_step is None else round(per_step, 4),
            "stopped": self.stopped, "init_from": cfg.init,
            "init_sha256": sha256_of(init) if init and init.is_file() else None,
            "best_step": self.best_step if val else self.step,
            "best_val_psnr_y": None if self.best_psnr is None else round(self.best_psnr, 3),
            "best_val_ssim_y": None if self.best_ssim is None else round(self.best_ssim, 4),
            "validation": (f"{len(self.val_pairs)} images, "
                           + (f"center crop {cfg.val_crop}" if cfg.val_crop > 0 else "full size")
                           + ", PSNR/SSIM on Y (BT.601)"
                           + (f"; held-out clean images with fixed synthetic {cfg.synth} rain "
                              f"(make_synthetic_val, seed {cfg.seed}), not the real rainy images"
                              if self.synth_on else "")),
            "fp16_check_psnr_db": round(fp16_psnr, 2),
            "torch": torch.__version__, "trained_at": _dt.datetime.now().isoformat(timespec="seconds"),
        }
        if self.synth_on:
            card["synthetic_rain"] = {
                "generator": describe_generator(cfg.synth), "kind": cfg.synth, "mix_real": cfg.synth_mix,
                "backgrounds": f"{self.data_dir.resolve().name}/clean ({len(self.train_pairs)} training images)",
                "seed": cfg.seed, "rendered_on": f"each {cfg.patch}x{cfg.patch} training patch; validation: "
                "full image, then center crop", "validation_rain": f"make_synthetic_val(kind={cfg.synth!r}, "
                f"seed={cfg.seed}): rain seeds hashed from kind, seed and file name (not the training stream)"}
        return card


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) one training run; see the module docstring for what it writes."""
    run = Trainer(cfg)
    run.loop()
    export_path = run.export()
    return TrainResult(run.out, run.step, run.total, run.stopped, run.best_psnr, run.best_step,
                       run.median_step_s(), export_path, run.config)


def _augmentation_text(cfg: TrainConfig) -> str:
    """The card's ``augmentation`` line: flips and identity pairs."""
    parts = ["random horizontal/vertical flips"] if cfg.flips else []
    if cfg.identity_mix:
        parts.append(f"{cfg.identity_mix:.0%} identity pairs (a clean crop as input and target; not in the "
                     "paper: keeps rain-free highlights, see the blob check)")
    return "; ".join(parts) or "none"


def _training_data_text(cfg: TrainConfig, data_dir: Path, n_train: int, n_val: int) -> str:
    """The card's ``training_data`` line: real pairs, or synthetic rain (+ mix) over clean images."""
    name = data_dir.resolve().name
    if cfg.synth == "none":
        return (f"{name}: {n_train} training pairs; {n_val} pairs held out for validation (seed {cfg.seed}); "
                "no test images used")
    real = (f"{cfg.synth_mix:.0%} of the patches are real {name} rainy/clean pairs" if cfg.synth_mix
            else f"no real rainy images of {name} used")
    return (f"synthetic {cfg.synth} rain (derain_core.synth, random_params(kind={cfg.synth!r}), new parameters "
            f"per {cfg.patch}x{cfg.patch} patch, rain seeds drawn from seed {cfg.seed}) rendered on the fly over "
            f"the clean backgrounds of {name}: {n_train} training images with random crops and flips; {real}; "
            f"{n_val} images held out for validation with fixed synthetic {cfg.synth} rain (seed {cfg.seed}); "
            "no test images used")


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------
def _parse_kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``MODEL --data DIR --steps N|--minutes M [...]`` to ``parser``."""
    d = TrainConfig(model="")
    parser.add_argument("model", help="a registered network id, or control (the plain-CNN control)")
    parser.add_argument("--data", help="paired training folder (default: ../shared/data/Rain100L_train)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="number of optimizer steps")
    budget.add_argument("--minutes", type=float, help="wall-time budget in minutes (resumes included); "
                        "the LR schedule follows the fraction of the budget spent, robust to speed changes")
    parser.add_argument("--batch", type=int, default=d.batch, help="batch size (default %(default)s)")
    parser.add_argument("--patch", type=int, default=d.patch, help="crop size (default %(default)s)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--recipe", choices=RECIPE_KINDS, default=d.recipe,
                        help="short: warm-up + cosine over the budget, gradient clipping, EMA (default); "
                        "paper: the paper's own schedule scaled to the budget")
    parser.add_argument("--val-every", type=int, default=d.val_every, help="steps between validations")
    parser.add_argument("--val-count", type=int, default=d.val_count,
                        help="validation pairs carved out of the training set (default %(default)s)")
    parser.add_argument("--val-crop", type=int, default=d.val_crop,
                        help="center crop of validation images, 0 = full (default %(default)s)")
    parser.add_argument("--save-every", type=int, default=d.save_every,
                        help="steps between `last` checkpoints (0 = at each validation)")
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--out", help="run folder (default runs/<model>_<variant>)")
    parser.add_argument("--variant", help="variant name (default: from the data folder name)")
    parser.add_argument("--export-dir", help="where the best weights are exported (default <out>/export)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last")
    parser.add_argument("--overwrite", action="store_true", help="start afresh in a folder holding a run")
    parser.add_argument("--init", help="start from a weights .safetensors file")
    parser.add_argument("--stop-at", type=int, help="pause resumably at this step (run a long "
                        "schedule in chunks with --resume)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: on where the device has native bf16)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the training step (the first step compiles; see "
                        "`derain bench --train --compile` for whether it pays back)")
    parser.add_argument("--compile-blocks", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the block kernels that declare one (JDNet's attention; "
                        "the first step compiles for about a minute). Default: on for CPU")
    parser.add_argument("--reference-kernels", action="store_true",
                        help="train on the blocks' plain reference code, the path that trained the weights "
                        "shipped before the training-speed work (for comparisons; validation stays fast)")
    parser.add_argument("--config", type=_parse_kv, action="append", default=[], metavar="KEY=VALUE",
                        help="model config override (repeatable; JSON values)")
    parser.add_argument("--tiny", action="store_true", help="use the card's tiny test_config")
    parser.add_argument("--no-flips", dest="flips", action="store_false", help="no flip augmentation")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--synth", choices=("none", *SYNTH_KINDS), default=d.synth,
                        help="train on synthetic rain of this preset over the clean images, validate on a "
                        "fixed synthetic split; the variant defaults to its name (default %(default)s)")
    parser.add_argument("--synth-mix", type=float, default=d.synth_mix, metavar="F",
                        help="with --synth: fraction of samples from the real pairs (default %(default)s)")
    parser.add_argument("--identity-mix", type=float, default=d.identity_mix, metavar="F",
                        help="fraction of samples that are identity pairs, a clean crop as input and target, "
                        "so that rain-free highlights survive (default %(default)s)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed :func:`add_train_arguments` arguments."""
    return TrainConfig(
        model=args.model, data=args.data, steps=args.steps, minutes=args.minutes, batch=args.batch,
        patch=args.patch, lr=args.lr, val_every=args.val_every, val_count=args.val_count,
        val_crop=args.val_crop, save_every=args.save_every, log_every=args.log_every, seed=args.seed,
        out=args.out, variant=args.variant, export_dir=args.export_dir, resume=args.resume,
        overwrite=args.overwrite, init=args.init, device=args.device, threads=args.threads,
        bf16=args.bf16, channels_last=args.channels_last, model_config=dict(args.config),
        tiny=args.tiny, flips=args.flips, progress=args.progress, stop_at=args.stop_at,
        synth=getattr(args, "synth", "none"), synth_mix=getattr(args, "synth_mix", 0.0),
        identity_mix=getattr(args, "identity_mix", 0.0),
        recipe=getattr(args, "recipe", "short"), compile=getattr(args, "compile", False),
        compile_blocks=getattr(args, "compile_blocks", None),
        reference_kernels=getattr(args, "reference_kernels", False))


def run_train(args: argparse.Namespace) -> int:
    """Run training from parsed arguments; returns a process exit code."""
    try:
        cfg = config_from_args(args)
        if not cfg.resume and cfg.steps is None and cfg.minutes is None:
            raise ValueError("give --steps N or --minutes M")
        res = train(cfg)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, TypeError) as e:
        if settings.get("DERAIN_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    psnr = "n/a" if res.best_val_psnr_y is None else f"{res.best_val_psnr_y:.2f} dB (step {res.best_step})"
    sps = "n/a" if res.sec_per_step is None else f"{res.sec_per_step:.3f}"
    print(f"{res.stopped}: {res.step}/{res.total_steps} steps, {sps} s/step, best val PSNR-Y {psnr}")
    print(f"run folder: {res.out_dir}")
    if res.export_path:
        print(f"exported: {res.export_path}")
    return 130 if res.stopped == "interrupt" else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m derain_core.train``."""
    parser = argparse.ArgumentParser(prog="python -m derain_core.train", description=__doc__.split("\n")[0])
    add_train_arguments(parser)
    return run_train(parser.parse_args(argv))


if __name__ == "__main__":
    from .engine import reexec_with_hugepages
    reexec_with_hugepages()
    sys.exit(main())
