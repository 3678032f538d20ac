"""Data helpers for the Streamlit dashboard (no UI code here, so everything is testable).

* the bundled examples (``assets/examples/index.json``), tolerant of a missing index;
* the committed evaluation results (``results/``, or ``DERAIN_RESULTS_DIR``) as tidy rows;
* the papers' own numbers and parameter counts from the model cards;
* a before/after composite (wipe or blend), a browser-side before/after slider (HTML) and
  click mapping for the comparison view;
* one colour per model for every chart, readable column names, the benchmark machine in words;
* the robustness curve of the Rain lab: PSNR of every model against synthetic rain density.
"""
from __future__ import annotations

import csv
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import settings
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
    env = settings.get("DERAIN_EXAMPLES_INDEX")
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
    env = settings.get("DERAIN_RESULTS_DIR")
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


BENCH_SIZE = "481x321"  # Rain100L's image size: the runtime the Benchmark page quotes


def _bench_pixels(size: Any) -> int | None:
    try:
        w, h = (int(v) for v in str(size).lower().split("x"))
    except ValueError:
        return None
    return w * h


def bench_seconds(bench: dict[str, Any] | None, size: str = BENCH_SIZE) -> dict[str, tuple[str, float]]:
    """``{model_id: (size, fast-path seconds)}`` from ``bench_cpu.json``: for each model the
    measured size closest (in pixels) to ``size``."""
    target = _bench_pixels(size) or 0
    best: dict[str, tuple[int, str, float]] = {}
    for r in (bench or {}).get("rows", []):
        pixels = _bench_pixels(r.get("size", ""))
        try:
            fast = float(r["fast_s"])
        except (KeyError, TypeError, ValueError):
            continue
        if pixels is None or not math.isfinite(fast):
            continue
        mid = str(r.get("model_id"))
        if mid not in best or abs(pixels - target) < best[mid][0]:
            best[mid] = (abs(pixels - target), str(r["size"]), fast)
    return {m: (size_, s_) for m, (_, size_, s_) in best.items()}


def benchmark_rows(summary: Sequence[dict], per_image: Sequence[dict] | None,
                   bench: dict[str, Any] | None, size: str = BENCH_SIZE) -> list[dict[str, Any]]:
    """Summary rows joined with one runtime source: the fast-path seconds per image of
    ``bench_cpu.json`` at the measured size closest to ``size`` (Rain100L's 481x321).

    Adds ``seconds`` and ``seconds_source`` (``"bench_cpu.json, fast path, 481x321"``, or None
    when the model was not benchmarked) to copies of the rows. The evaluation's own per-image
    times (``per_image``, taken on whatever machine ran the evaluation, with its first-image
    warm-up) are not used: one page, one runtime per model. ``per_image`` is accepted for
    callers of the older signature and ignored.
    """
    timed = bench_seconds(bench, size)
    out = []
    for r in summary:
        row = dict(r)
        if r["model"] in timed:
            at, secs = timed[r["model"]]
            row["seconds"], row["seconds_source"] = secs, f"bench_cpu.json, fast path, {at}"
        else:
            row["seconds"], row["seconds_source"] = None, None
        out.append(row)
    return out


RECHECK_SUFFIX = "_recheck"


def split_rechecks(rows: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """Rows of ``<name>_recheck`` results folders (a re-measurement of ``<name>``'s test set
    with a newer fast path) apart from the others, so a chart does not show them twice."""
    main = [r for r in rows if not str(r.get("source", "")).endswith(RECHECK_SUFFIX)]
    return main, [r for r in rows if str(r.get("source", "")).endswith(RECHECK_SUFFIX)]


def recheck_note(rows: Sequence[dict], rechecks: Sequence[dict], key: str = "psnr_y") -> str:
    """One sentence on the re-check folders: what each one re-measured and how it compares."""
    parts = []
    by = {(r["model"], r["source"]): r for r in rows}
    for src in dict.fromkeys(r["source"] for r in rechecks):
        first = src.removesuffix(RECHECK_SUFFIX)
        pairs = []
        for r in (r for r in rechecks if r["source"] == src and r["model"] != BASELINE):
            before = by.get((r["model"], first), {}).get(key)
            now = r.get(key)
            if isinstance(now, float):
                pairs.append(f"{r['label']} {now:.2f}" + (f" (was {before:.2f})" if isinstance(before, float) else ""))
        if pairs:
            parts.append(f"results/{src} re-measures {first}'s test set with the current fast path and is left "
                         f"out of the charts; {COLUMN_NAMES.get(key, key)}: " + ", ".join(pairs) + ".")
    return " ".join(parts)


COLUMN_NAMES: dict[str, str] = {
    "label": "Model", "model": "Model id", "name": "Model", "variant": "Weights", "source": "Results folder",
    "images": "Images", "psnr_rgb": "PSNR RGB (dB)", "ssim_rgb": "SSIM RGB", "psnr_y": "PSNR Y (dB)",
    "ssim_y": "SSIM Y", "seconds": "Seconds per image", "seconds_source": "Runtime from",
    "params": "Parameters (M)", "params_m": "Parameters (M)", "paper": "Paper", "weights": "Shipped weights",
    "predicts": "Predicts", "dataset": "Test set", "psnr": "PSNR (dB)", "ssim": "SSIM",
    "colour_space": "Colour space", "note": "Note", "model_id": "Model id", "size": "Image size",
    "fast_s": "Fast path (s)", "reference_s": "Reference path (s)", "speedup": "Speed-up",
    "macs_g": "GMACs", "gflops": "GFLOP/s", "peak_mb": "Peak memory (MB)", "device": "Device",
    "precision": "Precision", "psnr_vs_reference": "PSNR vs reference path (dB)",
}


def readable_columns(columns: Sequence[str]) -> dict[str, str]:
    """``{column: readable name}`` for a table (unknown names: underscores to spaces, capitalised)."""
    return {c: COLUMN_NAMES.get(c, str(c).replace("_", " ").capitalize()) for c in columns}


def machine_text(bench: dict[str, Any] | None) -> str:
    """The benchmark machine in words: ``"AMD EPYC CPU, 2 threads, PyTorch 2.13.0+cpu; measured
    matrix-multiply peak 377 GFLOP/s fp32, 718 GFLOP/s bf16"``."""
    if not bench:
        return "not recorded"
    m = bench.get("machine")
    if isinstance(m, dict):
        parts = []
        if m.get("cpu"):
            parts.append(f"{m['cpu']} CPU")
        if m.get("gpu"):
            parts.append(f"{m['gpu']} GPU")
        if m.get("threads"):
            parts.append(f"{m['threads']} thread{'s' if int(m['threads']) != 1 else ''}")
        if m.get("torch"):
            parts.append(f"PyTorch {m['torch']}")
        text = ", ".join(parts) or "not recorded"
    else:
        text = str(m) if m else "not recorded"
    peaks = [f"{float(bench[k]):.0f} GFLOP/s {k.rsplit('_', 1)[1]}" for k in
             ("matmul_peak_gflops_fp32", "matmul_peak_gflops_bf16") if isinstance(bench.get(k), (int, float))]
    return text + ("; measured matrix-multiply peak " + ", ".join(peaks) if peaks else "")


# --------------------------------------------------------------------------------------
# One colour per model, for every chart
# --------------------------------------------------------------------------------------
# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), in the
# registry's order; the rainy input is grey.
MODEL_COLOURS: dict[str, str] = {"msamnet": "#0072B2", "dsmnet": "#D55E00", "mfan": "#009E73",
                                 "rranet": "#CC79A7", "jdnet": "#E69F00", BASELINE: "#7F7F7F"}
_SPARE_COLOURS = ("#56B4E9", "#8C564B", "#000000", "#F0E442", "#17BECF")


def model_colour(model_id: str) -> str:
    """The colour of a model in every chart (a further registered model gets a spare colour)."""
    if model_id in MODEL_COLOURS:
        return MODEL_COLOURS[model_id]
    ids = [c.id for c in list_models() if c.id not in MODEL_COLOURS]
    i = ids.index(model_id) if model_id in ids else sum(map(ord, model_id))
    return _SPARE_COLOURS[i % len(_SPARE_COLOURS)]


def label_colours(rows: Sequence[dict]) -> dict[str, str]:
    """``{label: colour}`` for rows with ``model`` and ``label`` (a plotly ``color_discrete_map``):
    a model's colour whatever its weights (an untrained label too)."""
    return {r["label"]: model_colour(r["model"]) for r in rows if "label" in r and "model" in r}


# --------------------------------------------------------------------------------------
# The papers' numbers, grouped by test set
# --------------------------------------------------------------------------------------
PAPER_SYMBOLS = ("circle-open", "square-open", "diamond-open", "triangle-up-open", "triangle-down-open",
                 "star-open", "hexagon-open", "pentagon-open", "cross-open", "x-open", "hourglass-open")


def paper_groups(papers: Sequence[dict]) -> list[tuple[str, str, str, list[dict]]]:
    """The papers' rows grouped by (test set, colour space), each with a legend name and a
    marker symbol of its test set: ``[(name, dataset, symbol, rows), ...]``, test sets in first-seen order."""
    datasets = list(dict.fromkeys(r["dataset"] for r in papers))
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in papers:
        groups.setdefault((r["dataset"], r.get("colour_space") or "not stated"), []).append(r)
    out = []
    for (ds, cs), rows in sorted(groups.items(), key=lambda g: datasets.index(g[0][0])):
        space = "colour space not stated" if cs == "not stated" else f"{cs}"
        out.append((f"paper · {ds} · {space}", ds, PAPER_SYMBOLS[datasets.index(ds) % len(PAPER_SYMBOLS)], rows))
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


def png_data_url(img: Any) -> str:
    """A lossless PNG ``data:`` URL of an image (float [0, 1] or uint8 ``H x W x 3``)."""
    import base64

    from . import io

    return "data:image/png;base64," + base64.b64encode(io.png_bytes(_to_float(img))).decode("ascii")


_SLIDER_CSS = """
body{margin:0;font-family:"Source Sans Pro","Source Sans 3",system-ui,sans-serif;color:#31333f;background:transparent}
.ba{position:relative;width:100%;user-select:none;-webkit-user-select:none;touch-action:pan-y;
 cursor:ew-resize;line-height:0;outline:none}
.ba img{display:block;width:100%;height:auto;pointer-events:none}
.ba img.before{position:absolute;left:0;top:0}
.ba .line{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#fff;
 box-shadow:0 0 0 1px rgba(0,0,0,.55);pointer-events:none}
.ba .knob{position:absolute;top:50%;width:30px;height:30px;margin:-15px 0 0 -15px;border-radius:50%;
 background:#fff;border:2px solid #31333f;box-sizing:border-box;pointer-events:none}
.ba .knob::before{content:"\\2194";display:block;text-align:center;line-height:26px;font-size:16px;color:#31333f}
.tag{position:absolute;top:6px;padding:2px 7px;background:rgba(0,0,0,.62);color:#fff;font-size:13px;
 line-height:1.35;border-radius:3px;max-width:45%;overflow-wrap:anywhere;pointer-events:none}
.tag.left{left:6px}.tag.right{right:6px}
.controls{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center;margin:8px 0 2px;font-size:14px;line-height:1.4}
.controls input[type=range]{flex:1 1 160px;min-width:120px}
"""

_SLIDER_JS = """
(function(){
 const box=document.getElementById("ba"), before=box.querySelector("img.before"),
  line=box.querySelector(".line"), knob=box.querySelector(".knob"),
  range=document.getElementById("ba-pos"), value=document.getElementById("ba-value");
 let mode=box.dataset.mode, pos=parseFloat(box.dataset.pos), drag=false;
 function draw(){
  box.dataset.pos=pos.toFixed(1); box.dataset.mode=mode; range.value=pos;
  if(mode==="wipe"){
   before.style.opacity=1; before.style.clipPath="inset(0 "+(100-pos)+"% 0 0)";
   line.style.display=knob.style.display="block"; line.style.left=knob.style.left=pos+"%";
   value.textContent="divider at "+Math.round(pos)+"%";
  } else {
   before.style.clipPath="none"; before.style.opacity=1-pos/100;
   line.style.display=knob.style.display="none";
   value.textContent=Math.round(100-pos)+"% "+box.dataset.left+", "+Math.round(pos)+"% "+box.dataset.right;
  }
 }
 function at(e){const r=box.getBoundingClientRect();
  pos=Math.min(100,Math.max(0,(e.clientX-r.left)/r.width*100)); draw();}
 box.addEventListener("pointerdown",e=>{drag=true;box.setPointerCapture(e.pointerId);at(e);e.preventDefault();});
 box.addEventListener("pointermove",e=>{if(drag)at(e);});
 box.addEventListener("pointerup",()=>{drag=false;});
 box.addEventListener("pointercancel",()=>{drag=false;});
 box.addEventListener("keydown",e=>{const d=e.key==="ArrowLeft"?-2:e.key==="ArrowRight"?2:0;
  if(d){pos=Math.min(100,Math.max(0,pos+d));draw();e.preventDefault();}});
 range.addEventListener("input",()=>{pos=parseFloat(range.value);draw();});
 document.querySelectorAll("input[name=ba-mode]").forEach(r=>r.addEventListener("change",()=>{
  if(r.checked){mode=r.value;draw();}}));
 draw();
})();
"""


def before_after_html(before: Any, after: Any, before_label: str = "input", after_label: str = "output",
                      position: float = 0.5, mode: str = "wipe") -> str:
    """A before/after slider that runs in the browser: a self-contained HTML page with both
    images embedded as lossless PNG ``data:`` URLs and a few lines of JavaScript, so dragging
    the divider (or the range input, or the arrow keys) and switching between wipe and blend
    never goes back to the server. ``before`` and ``after`` must have the same size; they are
    shown at most at their own width (narrower screens: scaled to the width).

    ``mode="wipe"``: ``before`` left of the divider at ``position`` (0..1 of the width);
    ``"blend"``: ``before`` faded over ``after`` (``position`` 1 = ``after`` only).
    """
    import html as _html

    a, b = _to_float(before), _to_float(after)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"images must have the same HxWx3 shape, got {a.shape} and {b.shape}")
    if mode not in ("wipe", "blend"):
        raise ValueError(f"mode must be 'wipe' or 'blend', got {mode!r}")
    h, w = a.shape[:2]
    pos = 100.0 * float(np.clip(position, 0.0, 1.0))
    left, right = _html.escape(before_label), _html.escape(after_label)
    checked = {m: " checked" if m == mode else "" for m in ("wipe", "blend")}
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{_SLIDER_CSS}</style></head><body>'
        f'<div style="max-width:{w}px">'
        f'<div class="ba" id="ba" data-pos="{pos:.1f}" data-mode="{mode}" data-left="{left}" data-right="{right}" '
        f'tabindex="0" role="slider" '
        f'aria-label="Before/after divider: {left} left, {right} right" aria-valuemin="0" aria-valuemax="100" '
        f'style="aspect-ratio:{w}/{h}">'
        f'<img class="after" alt="{right}" width="{w}" height="{h}" src="{png_data_url(b)}">'
        f'<img class="before" alt="{left}" width="{w}" height="{h}" src="{png_data_url(a)}">'
        f'<div class="line"></div><div class="knob"></div>'
        f'<span class="tag left">{left}</span><span class="tag right">{right}</span></div>'
        f'<div class="controls">'
        f'<label><input type="radio" name="ba-mode" value="wipe"{checked["wipe"]}> wipe</label>'
        f'<label><input type="radio" name="ba-mode" value="blend"{checked["blend"]}> blend</label>'
        f'<input type="range" id="ba-pos" min="0" max="100" step="0.5" value="{pos:.1f}" '
        f'aria-label="Divider position or mix, %"><span id="ba-value"></span></div></div>'
        f"<script>{_SLIDER_JS}</script></body></html>")


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
