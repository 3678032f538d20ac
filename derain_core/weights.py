"""Trained weights: safetensors files plus a JSON card each, in ``weights/``.

File names are ``<model id>_<variant>.safetensors`` and ``<model id>_<variant>.json``.
The safetensors metadata holds the model config, so a file rebuilds its own network.
Nothing is ever downloaded; no pickle is ever loaded.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import settings
from .registry import create_model, get_card

WEIGHTS_DIR = Path(settings.get("DERAIN_WEIGHTS_DIR") or Path(__file__).resolve().parent.parent / "weights")


def weights_path(model_id: str, variant: str, directory: Path | None = None) -> Path:
    return Path(directory or WEIGHTS_DIR) / f"{model_id}_{variant}.safetensors"


def card_path(model_id: str, variant: str, directory: Path | None = None) -> Path:
    return Path(directory or WEIGHTS_DIR) / f"{model_id}_{variant}.json"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def available_variants(model_id: str, directory: Path | None = None) -> list[str]:
    """Variants that have a weights file for ``model_id`` (sorted)."""
    d = Path(directory or WEIGHTS_DIR)
    prefix = f"{model_id}_"
    return sorted(p.stem[len(prefix):] for p in d.glob(f"{prefix}*.safetensors"))


def read_card(model_id: str, variant: str, directory: Path | None = None) -> dict[str, Any] | None:
    """The JSON card of a weights file, or ``None`` if there is none."""
    p = card_path(model_id, variant, directory)
    return json.loads(p.read_text()) if p.is_file() else None


def save_weights(model: torch.nn.Module, model_id: str, variant: str, config: dict[str, Any],
                 card: dict[str, Any], half: bool = True, directory: Path | None = None) -> Path:
    """Write ``model``'s state dict (fp16 floats when ``half``) and its JSON card.

    ``card`` holds provenance (training data, steps, device, wall time, metrics); this
    function adds model id, variant, file name, dtype, config and sha256.
    """
    path = weights_path(model_id, variant, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v
    save_file(state, str(path), metadata={"model_id": model_id, "variant": variant,
                                          "config": json.dumps(config, sort_keys=True)})
    full_card = {"model_id": model_id, "variant": variant, "file": path.name,
                 "dtype": "float16" if half else "float32", "config": config, **card,
                 "sha256": sha256_of(path)}
    card_path(model_id, variant, directory).write_text(json.dumps(full_card, indent=2) + "\n")
    return path


def load_weights(model_id: str, variant: str, directory: Path | None = None) -> torch.nn.Module:
    """Build ``model_id`` with the config stored in the file and load its weights (fp32, CPU)."""
    from safetensors import safe_open

    path = weights_path(model_id, variant, directory)
    if not path.is_file():
        raise FileNotFoundError(f"no weights for {model_id} variant {variant!r} ({path})")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    config = json.loads(meta.get("config", "{}"))
    get_card(model_id)  # validates the id
    model = create_model(model_id, **config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


# Card fields that describe one training chunk (a run of `derain train`), kept per chunk in "chunks".
CHUNK_FIELDS = ("steps", "batch", "patch", "loss", "optimizer", "schedule", "grad_clip", "recipe", "ema_decay",
                "device", "device_type", "threads", "bf16_autocast", "wall_time_s", "sec_per_step", "stopped",
                "init_from", "best_step", "best_val_psnr_y", "best_val_ssim_y", "best_source", "skipped_steps",
                "skipped_nonfinite_loss",
                "rollbacks", "trained_at")


def accumulate_chunks(new_card: dict[str, Any], curve: list[dict[str, Any]],
                      previous: dict[str, Any] | None) -> dict[str, Any]:
    """The weight card of a chunk that continued ``previous`` (the card it started from, or None).

    Every chunk keeps its own record (``CHUNK_FIELDS`` and its validation curve) in ``chunks``;
    ``total_steps_all_chunks``, ``total_wall_time_s`` and ``n_chunks`` sum them. A card written
    before chunks existed counts as one chunk. ``previous`` is None for a run from scratch.
    """
    card = dict(new_card)
    history: list[dict[str, Any]] = []
    if previous is not None:
        history = [dict(c) for c in previous.get("chunks", [])]
        if not history:  # an older card: its own fields are its one chunk
            history = [{**{k: previous.get(k) for k in CHUNK_FIELDS},
                        "validation_curve": previous.get("validation_curve", []),
                        "sha256": previous.get("sha256")}]
    this = {k: new_card.get(k) for k in CHUNK_FIELDS}
    this["validation_curve"] = curve
    this["chunk"] = len(history) + 1
    for i, c in enumerate(history, 1):
        c.setdefault("chunk", i)
    history.append(this)
    card["chunks"] = history
    card["n_chunks"] = len(history)
    card["total_steps_all_chunks"] = sum(int(c.get("steps") or 0) for c in history)
    card["total_wall_time_s"] = round(sum(float(c.get("wall_time_s") or 0.0) for c in history), 1)
    card["validation_curve"] = curve
    return card


def started_from(card: dict[str, Any], shipped: dict[str, Any] | None, shipped_file: Path) -> bool:
    """Whether the run behind ``card`` was initialised from the shipped weights ``shipped``."""
    init = card.get("init_from")
    if not init or shipped is None:
        return False
    if card.get("init_sha256"):
        return card["init_sha256"] == shipped.get("sha256")
    p = Path(init)
    return p.is_file() and p.resolve() == shipped_file.resolve() and sha256_of(p) == shipped.get("sha256")
