"""Data helpers for the Streamlit dashboard (no UI code here, so everything is testable).

* the bundled examples (``assets/examples/index.json``), tolerant of a missing index;
* the committed evaluation results (``results/``, or ``DERAIN_RESULTS_DIR``) as tidy rows;
* the papers' own numbers and parameter counts from the model cards;
* a before/after composite (wipe or blend) and click mapping for the comparison view;
* the robustness curve of the Rain lab: PSNR of every model against synthetic rain density.
"""
from __future__ import annotations

import csv
import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import weights as wts
from .engine import UNTRAINED, derain_one, model_label as _label, resolve_variant
from .io import downscale
from .registry import ModelCard, create_model, get_card, list_models
from .stats import count_params

REPO_ROOT = Path(__file__).resolve().parent.parent
METRIC_KEYS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")
BASELINE = "rainy input"  # the model name ``derain eval --input-baseline`` writes


# --------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """One bundled example: a rainy image and, when shipped, its clean ground truth."""

    title: str
    file: Path
    gt: Path | None = None
    preset: str | None = None

    @property
    def has_gt(self) -> bool:
        return self.gt is not None


def examples_index() -> Path:
    """Path of the examples index (``DERAIN_EXAMPLES_INDEX`` overrides)."""
    env = os.environ.get("DERAIN_EXAMPLES_INDEX")
    return Path(env) if env else REPO_ROOT / "assets" / "examples" / "index.json"


def _resolve(name: str | None, base: Path) -> Path | None:
    if not name:
        return None
    p = Path(name)
    for cand in ((p,) if p.is_absolute() else (base / p, REPO_ROOT / p)):
        if cand.is_file():
            return cand
    return None


def load_examples(index: str | Path | None = None) -> list[Example]:
    """Examples listed in the index; ``[]`` when the index is missing or unreadable.

    Accepts a list of entries or ``{"examples": [...]}``; each entry has ``file``, ``gt``
    (or ``gt_file``/``clean``, may be null), ``preset`` and ``title``. Paths are relative to
    the index's folder (or the repository root). Entries whose image is missing are skipped.
    """
    path = Path(index) if index is not None else examples_index()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    entries = data.get("examples", []) if isinstance(data, dict) else data
    out = []
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, dict):
            continue
        file = _resolve(e.get("file") or e.get("rainy"), path.parent)
        if file is None:
            continue
        gt_name = e.get("gt", e.get("gt_file", e.get("clean")))
        out.append(Example(str(e.get("title") or file.stem), file, _resolve(gt_name, path.parent),
                           e.get("preset")))
    return out


def clean_images(examples: Sequence[Example]) -> list[tuple[str, Path]]:
    """The distinct clean ground-truth images of the examples, as ``(title, path)``."""
    seen: dict[Path, str] = {}
    for ex in examples:
        if ex.gt is not None and ex.gt not in seen:
            seen[ex.gt] = ex.gt.stem.removesuffix("_clean").replace("_", " ")
    return [(title, p) for p, title in seen.items()]


# --------------------------------------------------------------------------------------
# Models: names, variants, parameter counts, the papers' numbers
# --------------------------------------------------------------------------------------
def model_label(model_id: str, variant: str | None) -> str:
    """Display name; ``(untrained)`` appended for random weights."""
    name = get_card(model_id).name if model_id != BASELINE else BASELINE
    return _label(name, variant != UNTRAINED)


@functools.lru_cache(maxsize=None)
def param_count(model_id: str, variant: str | None = None) -> int:
    """Parameters of a model as a weights variant builds it (the card's default config otherwise).

    Built on the CPU (about 0.1 s per model; the meta device would be slower here because its
    first use imports torch's decompositions, about 5 s), then counted; cached per process.
    """
    config: dict[str, Any] = {}
    if variant not in (None, UNTRAINED):
        card = wts.read_card(model_id, variant)
        config = dict((card or {}).get("config") or {})
    return count_params(create_model(model_id, **config))


def model_rows(cards: Sequence[ModelCard] | None = None) -> list[dict[str, Any]]:
    """One row per model: id, name, paper, parameters, shipped weight variants or "untrained"."""
    rows = []
    for card in cards or list_models():
        variants = wts.available_variants(card.id)
        rows.append({"model": card.id, "name": card.name, "paper": f"{card.venue} {card.year}",
                     "params_m": round(param_count(card.id) / 1e6, 3),
                     "weights": ", ".join(variants) if variants else UNTRAINED,
                     "predicts": card.predicts})
    return rows


def paper_rows(cards: Sequence[ModelCard] | None = None) -> list[dict[str, Any]]:
    """The papers' own PSNR/SSIM (``card.paper_results``) with each model's parameter count."""
    rows = []
    for card in cards or list_models():
        params = param_count(card.id)
        for r in card.paper_results:
            rows.append({"model": card.id, "name": card.name, "dataset": r.dataset, "psnr": r.psnr,
                         "ssim": r.ssim, "colour_space": r.colour_space, "note": r.note,
                         "params_m": round(params / 1e6, 3)})
    return rows


# --------------------------------------------------------------------------------------
# Committed evaluation results
# --------------------------------------------------------------------------------------
def results_dir() -> Path:
    """Folder of the committed results (``DERAIN_RESULTS_DIR`` overrides ``<repo>/results``)."""
    env = os.environ.get("DERAIN_RESULTS_DIR")
    return Path(env) if env else REPO_ROOT / "results"


def _num(v: Any) -> Any:
    """CSV/JSON cell -> float where it is a number, else unchanged."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def load_eval_summary(root: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows of every ``<root>/<variant>/eval_summary.json``.

    Each row: model, variant, label, images, psnr_rgb, ssim_rgb, psnr_y, ssim_y, trained,
    params (None for the rainy-input baseline), source (the results folder name).
    """
    root = Path(root) if root is not None else results_dir()
    rows = []
    for path in sorted(root.glob("*/eval_summary.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for r in data if isinstance(data, list) else []:
            model = str(r.get("model", ""))
            variant = str(r.get("variant") or path.parent.name)
            if model != BASELINE and model not in _known_ids():
                continue
            row = {"model": model, "variant": variant, "source": path.parent.name,
                   "images": int(r.get("images", 0) or 0)}
            row.update({k: _num(r.get(k)) for k in METRIC_KEYS})
            row["trained"] = model != BASELINE and variant != UNTRAINED
            row["label"] = model_label(model, variant)
            row["params"] = None if model == BASELINE else _safe_params(model, variant)
            rows.append(row)
    return rows


def input_baseline(variant: str, root: str | Path | None = None) -> dict[str, float] | None:
    """The rainy input's own scores on ``variant``'s test set (its ``rainy input`` row in
    ``<root>/<variant>/eval_summary.json``: images and the metrics), or ``None`` when not recorded."""
    root = Path(root) if root is not None else results_dir()
    try:
        data = json.loads((root / variant / "eval_summary.json").read_text())
    except (OSError, ValueError):
        return None
    for r in data if isinstance(data, list) else []:
        if isinstance(r, dict) and r.get("model") == BASELINE:
            return {k: _num(r[k]) for k in ("images", *METRIC_KEYS) if isinstance(_num(r.get(k)), float)}
    return None


def load_eval_per_image(root: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows of every ``<root>/<variant>/eval_per_image.csv`` (numbers as floats, label added)."""
    root = Path(root) if root is not None else results_dir()
    rows = []
    for path in sorted(root.glob("*/eval_per_image.csv")):
        try:
            with open(path, newline="") as f:
                for r in csv.DictReader(f):
                    row = {k: (_num(v) if k not in ("model", "variant", "image") else v) for k, v in r.items()}
                    row.setdefault("variant", path.parent.name)
                    if row.get("model") not in _known_ids():
                        continue
                    row["label"] = model_label(row["model"], row["variant"])
                    row["source"] = path.parent.name
                    rows.append(row)
        except OSError:
            continue
    return rows


def load_bench(root: str | Path | None = None) -> dict[str, Any] | None:
    """``<root>/bench_cpu.json`` (``{machine, rows: [...]}``), or ``None`` when absent/unreadable."""
    root = Path(root) if root is not None else results_dir()
    try:
        data = json.loads((root / "bench_cpu.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return None
    return data


def benchmark_rows(summary: Sequence[dict], per_image: Sequence[dict],
                   bench: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Summary rows joined with runtime: mean seconds per image from the per-image CSV
    (same model and variant), else the fast-path seconds of ``bench_cpu.json`` (largest size).

    Adds ``seconds`` and ``seconds_source`` ("eval" / "bench" / None) to copies of the rows.
    """
    per: dict[tuple[str, str], list[float]] = {}
    for r in per_image:
        s = r.get("seconds")
        if isinstance(s, float) and math.isfinite(s):
            per.setdefault((r["model"], r["variant"]), []).append(s)
    bench_s: dict[str, tuple[int, float]] = {}
    for r in (bench or {}).get("rows", []):
        try:
            w, h = (int(v) for v in str(r.get("size", "0x0")).lower().split("x"))
            pixels, fast = w * h, float(r["fast_s"])
        except (ValueError, KeyError, TypeError):
            continue
        mid = str(r.get("model_id"))
        if mid not in bench_s or pixels > bench_s[mid][0]:
            bench_s[mid] = (pixels, fast)
    out = []
    for r in summary:
        row = dict(r)
        key = (r["model"], r["variant"])
        if key in per:
            row["seconds"], row["seconds_source"] = float(np.mean(per[key])), "eval"
        elif r["model"] in bench_s:
            row["seconds"], row["seconds_source"] = bench_s[r["model"]][1], "bench"
        else:
            row["seconds"], row["seconds_source"] = None, None
        out.append(row)
    return out


def _known_ids() -> set[str]:
    return {c.id for c in list_models()}


def _safe_params(model_id: str, variant: str) -> int | None:
    try:
        return param_count(model_id, variant)
    except Exception:  # a results row for weights that are not shipped here
        return param_count(model_id)


# --------------------------------------------------------------------------------------
# Images: before/after composite, colour scales, clicks
# --------------------------------------------------------------------------------------
def _to_float(img: Any) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def before_after(before: Any, after: Any, position: float = 0.5, mode: str = "wipe",
                 line: bool = True) -> np.ndarray:
    """Composite of two same-size images as uint8 ``H x W x 3``.

    ``mode="wipe"``: columns left of ``position`` (0..1 of the width) show ``before``, the
    rest ``after``, with a thin white/black divider when ``line``. ``mode="blend"``:
    ``(1 - position) * before + position * after``. Inputs: float [0, 1] or uint8.
    """
    a, b = _to_float(before), _to_float(after)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"images must have the same HxWx3 shape, got {a.shape} and {b.shape}")
    t = float(np.clip(position, 0.0, 1.0))
    if mode == "blend":
        out = (1 - t) * a + t * b
    elif mode == "wipe":
        w = a.shape[1]
        split = int(round(t * w))
        out = b.copy()
        out[:, :split] = a[:, :split]
        if line and 0 < split < w:
            out[:, max(0, split - 1)] = 1.0
            out[:, min(w - 1, split)] = 0.0
    else:
        raise ValueError(f"mode must be 'wipe' or 'blend', got {mode!r}")
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def plotly_colorscale(cmap: str, n: int = 32) -> list[list[Any]]:
    """A plotly colour scale sampled from ``viz``'s own colour map, so the interactive view
    matches the rendered picture (``[[position, "rgb(r,g,b)"], ...]``, ``n`` stops)."""
    from . import viz

    rgb = viz.apply_colormap(np.linspace(0.0, 1.0, n)[None, :], cmap, vmin=0.0, vmax=1.0)[0]
    return [[i / (n - 1), f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(rgb.tolist())]


def click_to_native(value: dict[str, Any] | None, native_hw: tuple[int, int]) -> tuple[int, int] | None:
    """A ``streamlit-image-coordinates`` click (displayed pixels) -> ``(x, y)`` in native pixels.

    The component reports ``x, y`` in the displayed image and that image's ``width``/``height``;
    the native point is ``x * W / width`` (clamped into the image). ``None`` without a click.
    """
    if not value or "x" not in value or "y" not in value:
        return None
    h, w = native_hw
    dw = float(value.get("width") or w)
    dh = float(value.get("height") or h)
    x = int(min(w - 1, max(0, math.floor(float(value["x"]) * w / dw))))
    y = int(min(h - 1, max(0, math.floor(float(value["y"]) * h / dh))))
    return x, y


# --------------------------------------------------------------------------------------
# Rain lab: robustness curve
# --------------------------------------------------------------------------------------
def robustness_curve(clean: np.ndarray, densities: Sequence[float], models: Sequence[str],
                     preset_name: str = "heavy", variant: str | None = None, max_side: int = 128,
                     seed: int = 0, progress: Callable[[float, str], None] | None = None,
                     **overrides: Any) -> list[dict[str, Any]]:
    """PSNR (RGB and Y) of every model, and of the rainy input, against rain density.

    ``clean`` (float ``H x W x 3``) is area-downscaled to ``max_side`` to keep this cheap; for
    each density scale ``d`` the rain of ``synth.preset(preset_name, seed,
    density_scale=d, **overrides)`` (same seed, so the same streak positions grow denser) is
    added and every model derains it. ``progress(fraction, text)`` is called after each step.
    Rows: ``{density, model, label, variant, trained, psnr_rgb, psnr_y, seconds}``.
    """
    from . import metrics as mt
    from . import synth

    if not densities:
        raise ValueError("need at least one density level")
    small = downscale(np.asarray(clean, dtype=np.float32), max_side)
    rows: list[dict[str, Any]] = []
    steps, done = len(densities) * (len(models) + 1), 0
    for d in sorted(float(v) for v in densities):
        params = synth.preset(preset_name, seed=seed, density_scale=d, **overrides)
        rainy, _ = synth.add_rain(small, params)
        rows.append({"density": d, "model": BASELINE, "label": BASELINE, "variant": "-",
                     "trained": False, "psnr_rgb": mt.psnr(rainy, small),
                     "psnr_y": mt.psnr(rainy, small, on="y"), "seconds": 0.0})
        done += 1
        if progress:
            progress(done / steps, f"density x{d:g}: rain added")
        for model_id in models:
            r = derain_one(rainy, model_id, resolve_variant(model_id, variant, strict=False), metrics=False)
            rows.append({"density": d, "model": model_id, "label": r.label, "variant": r.variant,
                         "trained": r.trained, "psnr_rgb": mt.psnr(r.output, small),
                         "psnr_y": mt.psnr(r.output, small, on="y"), "seconds": r.seconds})
            done += 1
            if progress:
                progress(done / steps, f"density x{d:g}: {r.label}")
    return rows
