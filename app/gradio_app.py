"""Gradio demo: compare the five deraining networks on one photo (also a Hugging Face Space).

Layout and wiring only: models, metrics and every drawing come from ``derain_core``.

    python app/gradio_app.py [--host 0.0.0.0] [--port 7860] [--share]

or, from Python, ``from app.gradio_app import demo; demo.launch()``.
"""
from __future__ import annotations

import os

# Offline: no analytics or version checks; must be set before gradio is imported.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

try:  # ZeroGPU on Hugging Face Spaces; must be imported before torch initialises CUDA
    import spaces

    GPU = spaces.GPU
except ImportError:  # elsewhere: a decorator that does nothing
    def GPU(fn=None, **_kwargs):
        """Identity stand-in for ``spaces.GPU`` (usable bare or with arguments)."""
        return fn if fn is not None else (lambda f: f)

import argparse
import base64
import html
import io
import logging
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (or on Spaces) without installing the package
    sys.path.insert(0, str(ROOT))

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from derain_core import compare, estimate, report, settings, viz  # noqa: E402
from derain_core import weights as wts  # noqa: E402
from derain_core.compare import ModelResult  # noqa: E402
from derain_core.dashboard_data import load_examples  # noqa: E402

log = logging.getLogger("derain.gradio")

# ZeroGPU Spaces set SPACES_ZERO_GPU=true; a GPU is attached only while a @GPU function runs.
ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true", "t")
QUOTA_MESSAGE = "exceeded your gpu quota"  # (lower case) how the spaces package words a visitor's spent daily quota

compare.use_threads(settings.get("DERAIN_THREADS"))  # default: torch's own thread count

DISPLAY_MAX_SIDE = settings.get("DERAIN_DISPLAY_MAX_SIDE")  # on-screen copies only
TILE_MAX_SIDE, TILE_MIN_SIDE = 400, 300  # each tile of the side-by-side grid (small images enlarged)
TILE_FONT = 20  # text on the grid tiles (px), readable when the grid is shown scaled down
ZOOM_MIN_SIDE = 480  # the clickable photo: small images enlarged so a point is easy to pick
MAX_UPLOAD = "50mb"
RUNS_DIR = Path(tempfile.gettempdir()) / "derain_gradio_runs"
RUN_MAX_AGE_S = 3600
DEFAULT_VARIANT = "default (each model's own)"
INSPECT_HINT = "Pick a model that has run to see its intermediate maps (computed on demand, cached per photo)."
SLIDER_LABEL = "Input | output"
ZOOM_FACTORS = [2, 3, 4, 6, 8]
READY = "Upload a photo (or pick an example) and press **Derain**."
RUN_LABEL, BUSY_LABEL = "Derain", "Running…"
CANCEL_LABEL, CANCELLING_LABEL = "Cancel", "Stopping…"
ZOOM_HINT = "Click a point on the photo above: the same crop of every image appears here at true pixel scale."
# Outputs that are layout (shown once there is something in them) or session state: the HTTP
# API's answer leaves them out.
NOT_IN_API = ("results_box", "explore_box", "zip_box", "maps_box", "state")


# --------------------------------------------------------------------------------------
# What the handlers return: every output named (the order is the wiring order in build())
# --------------------------------------------------------------------------------------
class RunOutputs(NamedTuple):
    """The page after each step of a run (``gr.skip()``: leave that component as it is)."""

    status: Any
    grid: Any
    outputs: Any  # the gallery of clean outputs
    table: Any
    zip: Any
    slider_model: Any
    slider: Any
    zoom_src: Any
    insp_model: Any
    crops: Any
    insp_group: Any
    maps: Any
    insp_note: Any
    expect: Any  # how each model's weights were trained and score (from the weight cards)
    details: Any  # device, precision and tiling in one line, and how best values are marked
    results_box: Any  # the results area: shown once there is a result (not in the HTTP API's answer)
    explore_box: Any  # zoom, inspector and outputs, the page's whole width: shown with it (nor this)
    zip_box: Any  # the zip's download button: shown once the zip is written (nor this)
    maps_box: Any  # the maps' gallery: hidden until a model is inspected (nor this)
    state: Any  # a gr.State: the last output (nor this)


class InspectOutputs(NamedTuple):
    insp_group: Any
    maps: Any
    insp_note: Any
    maps_box: Any  # the maps' gallery: shown once there are maps (not in the HTTP API's answer)
    state: Any


class ZoomOutputs(NamedTuple):
    zoom_src: Any
    crops: Any


@dataclass
class RunState:
    """One session's run: the checked upload, the results so far and their on-screen files.

    Maps live in the shared, size-bounded ``compare.MAPS``; a session keeps only the set it shows.
    """

    upload: compare.Upload
    digest: str  # sha256 of the uploaded file: cached maps survive a re-run of the same photo
    files: dict[str, str]  # "input", "zoom", "gt" and every model id -> display PNG path
    display: np.ndarray  # the clickable copy of the input
    display_scale: float
    results: list[ModelResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    point: tuple[float, float] | None = None  # the zoom point, in pixels of the processed photo
    folder: Path | None = None  # this run's display PNGs and zip (removed when the session runs again)
    shown_maps: tuple[tuple, compare.MapSet] | None = None  # (cache key, maps) in the inspector
    cancelled: bool = False
    show: str = viz.SHOW_OUTPUT  # what the grid, the outputs and the slider show (viz.SHOW_CHOICES)
    zoom: report.ZoomCrop | None = None  # the last click's crops, for the zip
    viewed_maps: dict[str, str] = field(default_factory=dict)  # map name -> its PNG, for the zip

    def result(self, model_id: str | None) -> ModelResult | None:
        return next((r for r in self.results if r.model_id == model_id), None)

    def maps_key(self, model_id: str, variant: str) -> tuple:
        return (self.digest, self.upload.processed_size, model_id, variant)

    def maps(self, model_id: str | None) -> compare.MapSet | None:
        """The maps of a model's result if they were computed and are still held."""
        r = self.result(model_id)
        if r is None:
            return None
        key = self.maps_key(r.model_id, r.variant)
        if self.shown_maps is not None and self.shown_maps[0] == key:
            return self.shown_maps[1]
        return compare.MAPS.get(key)


# The cancel token of each session's run in progress (set by the Cancel button, checked by the
# core between tiles and models); keyed by Gradio's session hash.
_RUNS: dict[str | None, compare.CancelToken] = {}
_RUNS_LOCK = threading.Lock()


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


# --------------------------------------------------------------------------------------
# Choices shown in the UI
# --------------------------------------------------------------------------------------
def _model_choices() -> list[tuple[str, str]]:
    """(label, id) per registered model; models without shipped weights say "untrained"."""
    return [(f"{m.label} · {m.year}", m.id) for m in compare.model_choices()]


def _variant_choices() -> list[str]:
    return [DEFAULT_VARIANT, *compare.variant_choices()]


def _load_examples(index: str | Path | None = None) -> tuple[list[list[str | None]], list[str]]:
    """Rows ``[image, ground truth or None]`` and labels of the bundled examples (none if no index)."""
    rows, labels = [], []
    for ex in load_examples(index):
        rows.append([str(ex.file), str(ex.gt) if ex.gt else None])
        note = "" if "ground truth" in ex.title.lower() else (
            " · with ground truth" if ex.has_gt else " · no ground truth")
        labels.append(ex.title + note)
    return rows, labels


# --------------------------------------------------------------------------------------
# Small wiring helpers
# --------------------------------------------------------------------------------------
def _upload_path(value: Any) -> str | None:
    """The server-side path of an image input (the run event skips Gradio's preprocessing)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("path")
    return str(value)


def _new_run_dir() -> Path:
    """A fresh folder for one run's display PNGs and zip; folders older than an hour are removed."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in RUNS_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > RUN_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    folder = RUNS_DIR / uuid.uuid4().hex
    folder.mkdir()
    return folder


def _display_png(folder: Path, name: str, rgb, min_side: int = 0) -> str:
    """Write an on-screen copy once and hand Gradio the file, not the array.

    (Gradio re-encodes arrays on every yield and rewrites the same cache file each time,
    which can truncate a copy the browser is reading; a file path is copied atomically once.)
    """
    img, _ = compare.display_copy(rgb, DISPLAY_MAX_SIDE, min_side)
    path = folder / f"{report.safe_name(name)}.png"
    Image.fromarray(img).save(path)
    return str(path)


def _shown(scale: float) -> str:
    return "" if scale >= 1.0 else f" (shown at {scale:.0%})"


def _view_file(st: RunState, r: ModelResult) -> str:
    """The display PNG of what ``st.show`` shows of a result (the output, or what it removed), written once."""
    if st.show == viz.SHOW_OUTPUT:
        return st.files[r.model_id]
    key = f"{r.model_id}:{st.show}"
    if key not in st.files:
        picture, _ = viz.changed_view(st.upload.image.rgb, r.output, st.show)
        st.files[key] = _display_png(st.folder, f"{r.model_id}_{st.show}", picture)
    return st.files[key]


def _grid_image(st: RunState) -> Any:
    """The side-by-side picture: input, ground truth, then every finished output (or what it removed)."""
    def tile(rgb):
        return compare.display_copy(rgb, TILE_MAX_SIDE, TILE_MIN_SIDE)[0]

    up = st.upload
    images, labels, texts = [tile(up.image.rgb)], ["input"], [report.tile_text(metrics=up.input_metrics)]
    if up.gt is not None:
        images.append(tile(up.gt.rgb))
        labels.append("ground truth")
        texts.append("")
    for r in st.results:
        images.append(tile(viz.changed_view(up.image.rgb, r.output, st.show)[0]))
        labels.append(viz.view_label(r.label, st.show))
        texts.append(report.tile_text(r))
    n = len(images)
    cols = n if n <= 3 else -(-n // 2)
    caption = "; ".join(t for t in (up.size_note, viz.show_note(st.show)) if t)
    return viz.labelled_grid(images, labels, texts, cols=cols, font_size=TILE_FONT, caption=caption)


def _gallery(st: RunState) -> list[tuple[str, str]]:
    """Clean images (no text drawn on them) for the full-size gallery."""
    up = st.upload
    img = up.image
    note = _shown(min(1.0, DISPLAY_MAX_SIDE / max(img.width, img.height)))
    items = [(st.files["input"], up.caption("input") + note)]
    if up.gt is not None:
        items.append((st.files["gt"], up.caption("ground truth") + note))
    for r in st.results:
        items.append((_view_file(st, r), viz.view_label(r.caption, st.show) + note))
    return items


def _table(st: RunState):
    """The metrics table: the rainy input's row first, the best value of each column in bold
    (``report.results_table`` decides which)."""
    t = report.results_table(st.results, st.upload.input_metrics)
    frame = pd.DataFrame(t.rows, columns=t.header)
    styles = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for i, j in t.best:
        styles.iat[i, j] = "font-weight: bold"
    return frame.style.apply(lambda _: styles, axis=None)


def _details(st: RunState) -> str:
    """The line under the table: where and how the models ran, and what bold means."""
    return f"**Ran on** {report.run_details(st.results)}. {report.BEST_NOTE}" if st.results else ""


def _slider_value(st: RunState, model_id: str | None):
    r = st.result(model_id)
    return None if r is None else (st.files["input"], _view_file(st, r))


def _slider(st: RunState, model_id: str | None) -> gr.ImageSlider:
    """The before/after pair, its label saying what the right side shows and at what size a
    downscaled run was processed."""
    label = SLIDER_LABEL if st.show == viz.SHOW_OUTPUT else f"Input | {st.show}"
    return gr.ImageSlider(value=_slider_value(st, model_id), label=st.upload.caption(label))


def _expectations(pairs) -> str:
    """How each model's weights were trained and score (Markdown, read from the weight cards)."""
    return report.expectations_markdown(report.expectations(pairs))


def _write_zip(st: RunState) -> str:
    """The run's zip as it stands: every output and what it removed, the last zoom and the maps
    viewed; replaced whole (never half-written) as more is viewed."""
    up = st.upload
    data = report.zip_bytes(st.results, up.image, up.gt,
                            extra={"variant_asked": up.variant or "default", "app": "gradio", **up.size_info()},
                            zoom=st.zoom, maps=st.viewed_maps)
    path = st.folder / report.zip_name(up.image.name)
    part = path.with_suffix(".part")
    part.write_bytes(data)
    part.replace(path)
    return str(path)


def _status(st: RunState, running: str | None, started: float) -> str:
    up = st.upload
    img = up.image
    w, h = up.original_size or up.processed_size
    lines = [f"**Image** {img.name}: {w}×{h}, {img.bit_depth}-bit"
             + (" with alpha" if img.alpha is not None else "")
             + (f" · ground truth {up.gt.name}" if up.gt is not None else " · no ground truth (PSNR/SSIM need one)")]
    if up.downscaled:
        lines.append(f"**{up.size_note.capitalize()}** (tick *Full resolution* to run at full size)")
    done, n_total = len(st.results), len(up.models)
    if st.cancelled:
        lines.append(f"**Cancelled** after {done} of {n_total} models ({time.perf_counter() - started:.1f} s)")
    elif running:
        lines.append(f"**Running** {running} ({done + len(st.failures) + 1}/{n_total}) …")
    else:
        lines.append(f"**Done**: {done} of {n_total} models in {time.perf_counter() - started:.1f} s")
    if st.results:
        untrained = [r.label for r in st.results if not r.trained]
        if untrained:
            lines.append("**Untrained** (random weights, outputs are not meaningful): " + ", ".join(untrained))
        if up.variant not in (None, compare.UNTRAINED):
            other = [f"{r.label}: {r.variant}" for r in st.results if r.variant != up.variant]
            if other:
                lines.append(f"Variant {up.variant!r} not shipped for some models, used their default: "
                             + ", ".join(other))
    for f in st.failures:
        lines.append(f"⚠️ {f}")
    return "\n\n".join(lines)


# --------------------------------------------------------------------------------------
# Event handlers
# --------------------------------------------------------------------------------------
def run(image: Any, gt: Any, models: list[str] | None, variant: str | None, st: RunState | None,
        full_res: bool = False, progress: gr.Progress = gr.Progress(), request: gr.Request = None):
    """Derain ``image`` with every chosen model, yielding the page after each model.

    ``full_res=False`` (the default) runs on a copy of at most ``compare.WORKING_MAX_SIDE`` px.
    On a ZeroGPU Space the work runs on the GPU for a duration sized to the request; a
    visitor whose daily GPU quota is spent gets the same run on the CPU, with a warning.
    The session's Cancel button stops the run between tiles (see :func:`cancel_run`).
    """
    run_id = _session(request)
    token = compare.CancelToken()
    with _RUNS_LOCK:
        _RUNS[run_id] = token
    try:
        try:
            yield from _run_on_gpu(image, gt, models, variant, st, progress, bool(full_res), run_id)
        except Exception as exc:  # the spaces package reports a spent quota as a gr.Error
            if QUOTA_MESSAGE not in str(exc).lower():
                raise
            log.warning("GPU quota spent, running on the CPU: %s", exc)
            gr.Warning("Your free GPU time on this Space is used up for now, so this run uses the CPU "
                       "(much slower). " + str(exc).strip("'\""), title="Running on the CPU")
            yield from _run_pages(image, gt, models, variant, st, progress, device="cpu", full_res=bool(full_res),
                                  run_id=run_id)
    finally:
        with _RUNS_LOCK:
            if _RUNS.get(run_id) is token:
                del _RUNS[run_id]


def cancel_run(request: gr.Request = None) -> gr.Button:
    """Stop this session's run before its next tile or model (the Cancel button). The run then
    ends like any other, with a page that says it was cancelled, and its end brings the Derain
    button back; until then the Cancel button says the run is stopping."""
    with _RUNS_LOCK:
        token = _RUNS.get(_session(request))
    if token is not None:
        token.cancel()
    return gr.Button(value=CANCELLING_LABEL, interactive=False)


CANCELLED_LINE = "**Cancelled**: the run stopped; results that finished are kept. Press Derain to run again."


def cancelled_status(text: str | None):
    """The status after Cancel on a ZeroGPU Space, where Gradio stops the run and its own last page
    never arrives: the "Running" line says the run stopped; unchanged when no run was in flight."""
    lines = (text or "").split("\n\n")
    if not any(line.startswith("**Running**") for line in lines):
        return gr.skip()
    return "\n\n".join(CANCELLED_LINE if line.startswith("**Running**") else line for line in lines)


def gpu_seconds(image: Any, gt: Any, models: list[str] | None, variant: Any = None, st: Any = None,
                progress: Any = None, full_res: bool = True, *_args: Any, **_kwargs: Any) -> int:
    """The ZeroGPU duration of a run request: the chosen models' CUDA cost at the size the run
    will use (the working copy unless ``full_res``; full size when not told), with a margin
    (:func:`derain_core.estimate.gpu_duration`)."""
    return estimate.gpu_duration_for_file(_upload_path(image), models or [c.id for c in compare.model_choices()],
                                          max_side=None if full_res else compare.WORKING_MAX_SIDE)


@GPU(duration=gpu_seconds)
def _run_on_gpu(image: Any, gt: Any, models: list[str] | None, variant: str | None, st: RunState | None,
                progress: gr.Progress, full_res: bool = False, run_id: str | None = None):
    yield from _run_pages(image, gt, models, variant, st, progress, full_res=full_res, run_id=run_id)


def _run_pages(image: Any, gt: Any, models: list[str] | None, variant: str | None, st: RunState | None,
               progress: gr.Progress, device: str | None = None, full_res: bool = False, run_id: str | None = None):
    """The pages of one run, on ``device`` (None: CUDA when present), at the working size
    unless ``full_res``; ``run_id`` finds the session's cancel token (none in a ZeroGPU worker)."""
    path, gt_path = _upload_path(image), _upload_path(gt)
    try:
        up = compare.prepare(path, gt_path, models or [], None if variant in (None, "", DEFAULT_VARIANT) else variant,
                             max_side=None if full_res else compare.WORKING_MAX_SIDE)
    except compare.UploadError as exc:
        raise gr.Error(str(exc), title=exc.title) from None

    digest = wts.sha256_of(path)
    if st is not None and st.folder is not None:  # the session's previous run: its files were served
        shutil.rmtree(st.folder, ignore_errors=True)
    folder = _new_run_dir()
    files = {"input": _display_png(folder, "input", up.image.rgb),
             "zoom": _display_png(folder, "zoom_source", up.image.rgb, ZOOM_MIN_SIDE)}
    if up.gt is not None:
        files["gt"] = _display_png(folder, "ground_truth", up.gt.rgb)
    disp, disp_scale = compare.display_copy(up.image.rgb, DISPLAY_MAX_SIDE, ZOOM_MIN_SIDE)
    st = RunState(up, digest, files, disp, disp_scale, folder=folder,
                  show=st.show if st is not None else viz.SHOW_OUTPUT)
    with _RUNS_LOCK:
        token = _RUNS.get(run_id)
    started = time.perf_counter()
    slider_sent = False  # the slider gets its first output once

    def page(running: str | None, stage: str) -> RunOutputs:
        """All outputs; ``stage`` is "start" (clears the old run), "more" or "end".

        The results area is hidden until the first result; the page that shows it sends the
        clean slate of the start page again (what a hidden area is sent may not reach the page).
        """
        nonlocal slider_sent
        ids = [(r.label, r.model_id) for r in st.results]
        start, skip = stage == "start", gr.skip()
        first = bool(ids) and not slider_sent  # the page that shows the results area
        reset = start or first
        if start:
            slider_model, slider = gr.Dropdown(choices=[], value=None), None
        elif first:  # first result: show it in the before/after slider
            slider_sent = True
            slider_model, slider = gr.Dropdown(choices=ids, value=ids[0][1]), _slider(st, ids[0][1])
        else:
            slider_model, slider = gr.Dropdown(choices=ids), skip
        zip_path = None if start else skip
        if stage == "end":
            zip_path = _write_zip(st)
        return RunOutputs(
            status=_status(st, running, started),
            grid=_grid_image(st),
            outputs=_gallery(st),
            table=_table(st),
            zip=zip_path,
            slider_model=slider_model,
            slider=slider,
            zoom_src=files["zoom"] if reset else skip,
            insp_model=gr.Dropdown(choices=ids, value=None) if reset else gr.Dropdown(choices=ids),
            crops=ZOOM_HINT if reset else skip,
            insp_group=gr.Dropdown(choices=[], value=None) if reset else skip,
            maps="" if reset else skip,
            insp_note=INSPECT_HINT if reset else skip,
            expect=_expectations((r.model_id, r.variant) for r in st.results) if st.results else skip,
            details=_details(st),
            results_box=gr.Column(visible=bool(ids)),
            explore_box=gr.Column(visible=bool(ids)),
            zip_box=gr.Column(visible=stage == "end"),
            maps_box=gr.Column(visible=False) if reset else skip,
            state=st,
        )

    names = {c.id: c.name for c in compare.model_choices()}
    n = len(up.models)
    progress(0, desc=f"{names[up.models[0]]} (1/{n})")
    yield page(names[up.models[0]], "start")
    steps = compare.run(up, device=device, cancel=token, on_progress=lambda p: progress(p.fraction, desc=p.text))
    try:
        for i, step in enumerate(steps):
            if step.error:
                st.failures.append(step.error)
            else:
                files[step.model_id] = _display_png(folder, step.model_id, step.result.output)
                st.results.append(step.result)
            if i + 1 < n and step.result is not None:
                yield page(names[up.models[i + 1]], "more")
    except compare.Cancelled:
        log.info("run cancelled after %d of %d models", len(st.results), n)
        st.cancelled = True
        if not st.results:
            yield page(None, "more")
            return
    if not st.results:
        raise gr.Error("Every model failed: " + "; ".join(st.failures), title="Run failed")
    progress(1.0, desc="done")
    yield page(None, "end")


def show_slider(st: RunState | None, model_id: str | None):
    """Before/after pair for the chosen output."""
    return None if st is None else _slider_value(st, model_id)


def _png_data(picture: np.ndarray | str) -> tuple[str, int, int]:
    """A picture (an array, or a PNG file written once) as a ``data:`` URL with its width and
    height: the page gets the bytes with the HTML, no file is served or copied."""
    if isinstance(picture, str):
        data = Path(picture).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    else:
        buf = io.BytesIO()
        Image.fromarray(picture).save(buf, format="PNG")
        data, (h, w) = buf.getvalue(), picture.shape[:2]
    return f"data:image/png;base64,{base64.b64encode(data).decode('ascii')}", w, h


def _crops_html(crops: list[tuple[str, np.ndarray]], factor: int, note: str = "") -> str:
    """The zoom crops as HTML figures, each ``<img>`` at its own pixel size (already enlarged
    ``factor`` times, nearest neighbour), so the browser shows them at exactly that factor; the
    figures wrap to the page's width, a wider crop scrolls within its figure."""
    figures = []
    for label, picture in crops:
        url, w, h = _png_data(picture)
        name = html.escape(label)
        figures.append(f'<figure class="crop"><figcaption>{name}</figcaption><img src="{url}" '
                       f'width="{w}" height="{h}" alt="{name}, zoom x{factor}"></figure>')
    head = f"Zoom x{factor}, nearest neighbour: every pixel of the photo is a {factor}×{factor} block"
    head += f"; {html.escape(note)}" if note else ""
    return f'<p class="crops-note">{head}.</p><div class="crops-row">{"".join(figures)}</div>'


def _zoom(st: RunState, factor: int, crop: int) -> ZoomOutputs:
    point = st.point
    st.zoom = report.ZoomCrop(point, int(crop), int(factor))
    crops = compare.crop_images(st.upload, st.results, point, int(crop), int(factor))
    s = st.display_scale
    marked = viz.mark_point(st.display, (point[0] * s, point[1] * s), max(2, round(crop * s)))
    return ZoomOutputs(zoom_src=marked, crops=_crops_html(crops, int(factor), st.upload.size_note))


def zoom_click(st: RunState | None, factor: int, crop: int, evt: gr.SelectData):
    """Clicked point on the (display copy of the) input: the same crop from every image."""
    if st is None:
        raise gr.Error("Run the models first, then click on the photo to compare crops.", title="Nothing to zoom")
    x, y = evt.index[:2]
    s, img = st.display_scale, st.upload.image
    st.point = (min(x / s, img.width - 1), min(y / s, img.height - 1))
    return (*_zoom(st, factor, crop), st)


def zoom_settings(st: RunState | None, factor: int, crop: int):
    """Redraw the crops at a new zoom factor or crop size (if a point was clicked)."""
    if st is None or st.point is None:
        return ZoomOutputs(zoom_src=gr.skip(), crops=gr.skip())
    return _zoom(st, factor, crop)


@GPU
def inspect_model(st: RunState | None, model_id: str | None, group: str | None, show_overlay: bool,
                  stretch: bool = False):
    """Intermediate maps of one model (computed on demand, cached per image)."""
    if not model_id:
        return InspectOutputs(insp_group=gr.Dropdown(choices=[], value=None), maps="", insp_note=INSPECT_HINT,
                              maps_box=gr.Column(visible=False), state=gr.skip())
    r = None if st is None else st.result(model_id)
    if r is None:
        raise gr.Error("That model has no result for this photo; run it first.", title="Nothing to inspect")
    key = st.maps_key(model_id, r.variant)
    try:  # only the maps pass (a preview pass for big photos); the output is already known
        maps = compare.MAPS.get_or_compute(key, lambda: compare.maps_of(st.upload.image, r))
    except (ValueError, RuntimeError, MemoryError) as exc:
        log.exception("maps of %s failed", model_id)
        raise gr.Error(f"Could not compute the maps of {r.label}: {exc}") from None
    st.shown_maps = (key, maps)  # the session holds only the set it shows; the cache is bounded
    groups = list(viz.group_specs(maps.specs, default="other"))
    group = group if group in groups else groups[0]
    items, note = render_maps(maps, group, show_overlay, st, stretch=bool(stretch))
    return InspectOutputs(insp_group=gr.Dropdown(choices=groups, value=group), maps=maps_html(items), insp_note=note,
                          maps_box=gr.Column(visible=True), state=st)


def change_group(st: RunState | None, model_id: str | None, group: str | None, show_overlay: bool,
                 across: bool = False, stretch: bool = False):
    """Redraw the cached maps for another group, overlay, across-scales or stretch setting."""
    maps = None if st is None else st.maps(model_id)
    if maps is None:
        return gr.skip(), gr.skip()
    items, note = render_maps(maps, group, show_overlay, st, across, bool(stretch))
    return maps_html(items), note


def redraw_across(st: RunState | None, model_id: str | None, group: str | None, show_overlay: bool,
                  across: bool, stretch: bool = False):
    """After a model is picked: its group's side-by-side view when "across scales/stages" is on."""
    return change_group(st, model_id, group, show_overlay, True, stretch) if across else (gr.skip(), gr.skip())


def _map_png(st: RunState, name: str, draw: Callable[[], np.ndarray]) -> str:
    """A map picture drawn and written once into the run's folder (Gradio gets the file, not an
    array), and remembered for the zip."""
    path = st.viewed_maps.get(name)
    if path is None or not Path(path).is_file():
        folder = st.folder / "maps"
        folder.mkdir(exist_ok=True)
        path = str(folder / f"{report.safe_name(name)}.png")
        Image.fromarray(draw()).save(path)
        st.viewed_maps[name] = path
    return path


def maps_html(items: list[tuple[np.ndarray | str, str]]) -> str:
    """Map pictures as HTML figures at their own size (each panel as the core drew it, 480 px;
    never enlarged, narrowed only to fit a phone), side by side while they fit, captions under."""
    figures = []
    for picture, caption in items:
        url, w, h = _png_data(picture)
        text = html.escape(caption)
        figures.append(f'<figure class="map"><img src="{url}" width="{w}" height="{h}" alt="{text}">'
                       f'<figcaption>{text}</figcaption></figure>')
    return f'<div class="maps-row">{"".join(figures)}</div>'


def render_maps(maps: compare.MapSet, group: str | None, show_overlay: bool,
                st: RunState | None = None, across: bool = False, stretch: bool = False) -> tuple[list, str]:
    """The pictures of one group of maps as (picture, caption) and the note over them; with
    ``st``, each picture is a PNG file in the run's folder (see :func:`_map_png`). ``across``:
    the group's first map with siblings across scales/stages, side by side on one colour scale
    (:func:`viz.sibling_view`); the group as usual, with a note, when none has any. ``stretch``:
    spatial attention coloured between its percentiles instead of 0 to 1."""
    stretched = " stretched" if stretch else ""
    grouped = viz.group_specs(maps.specs, default="other")
    chosen = grouped.get(group) or next(iter(grouped.values()))
    view = viz.sibling_view(chosen, maps.specs) if across else None
    if view is not None:
        axis, family = view

        def draw_family() -> np.ndarray:
            return viz.render_siblings([maps.maps[s.key] for s in family], family, axis, stretch=stretch)

        name = f"{maps.label} {family[0].key} across {axis}s{stretched}"
        caption = maps.caption(family[0]) + f" (across {axis}s, one colour scale)"
        picture = draw_family() if st is None or st.folder is None else _map_png(st, name, draw_family)
        lines = [f"**{maps.label}** · group **{group}** · **{family[0].title}** across {len(family)} {axis}s "
                 f"({', '.join(s.key for s in family)}) · {maps.note}; one colour scale for all panels, so equal "
                 "values have equal colours."]
        return [(picture, caption)], "\n".join(lines)
    base = maps.base if show_overlay else None
    items = []
    for spec in chosen:
        def draw(spec=spec) -> np.ndarray:
            return viz.render_map(maps.maps[spec.key], spec, image=base, overlay_alpha=0.55 if show_overlay else None,
                                  stretch=stretch)

        name = f"{maps.label} {group} {spec.key}" + (" overlay" if show_overlay else "") + stretched
        items.append((draw() if st is None or st.folder is None else _map_png(st, name, draw), maps.caption(spec)))
    attention = ("attention stretched between its 1st and 99th percentile" if stretch
                 else "attention on a fixed 0-1 scale")
    lines = [f"**{maps.label}** · group **{group}** · {len(items)} map(s) · {maps.note}; {attention}, "
             "features and rain layers between the 1st and 99th percentile, indices in categorical "
             "colours (each panel's note gives its actual values)."]
    if across:
        lines.insert(0, "No map in this group has siblings across scales or stages; the group is shown as usual.")
    lines += [f"- **{spec.title}**: {spec.meaning}" for spec in chosen]
    return items, "\n".join(lines)


def change_view(st: RunState | None, show: str, model_id: str | None):
    """Show the outputs, or what each model removed, in the grid, the outputs and the slider."""
    if st is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    st.show = show if show in viz.SHOW_CHOICES else viz.SHOW_OUTPUT
    slider = _slider(st, model_id) if st.result(model_id) is not None else gr.skip()
    return _grid_image(st), _gallery(st), slider, st


def refresh_zip(st: RunState | None):
    """Rewrite the zip with the last zoom and the maps viewed so far (after a click or a map)."""
    if st is None or not st.results or st.folder is None:
        return gr.skip()
    return _write_zip(st)


class PhotoCheck(NamedTuple):
    """The page after a photo arrives (checked before any run)."""

    inp: Any
    inp_msg: Any
    gt_msg: Any
    status: Any


class TruthCheck(NamedTuple):
    """The page after a ground truth arrives."""

    gt: Any
    gt_msg: Any
    status: Any
    more_inputs: Any  # the accordion holding it: opened, so that the user sees it


def _message(text: str | None) -> gr.Markdown:
    """A problem shown in place under an input (hidden when there is none)."""
    return gr.Markdown(f"⚠️ {text}" if text else "", visible=bool(text))


def _ready(image: Any) -> str:
    """The status once a readable photo is in place (replaces a finished run's or an error's)."""
    name = image.get("orig_name") if isinstance(image, dict) else None
    size = compare.image_size(_upload_path(image))
    what = f"**{name or 'Photo'}**" + (f" ({size[0]}×{size[1]})" if size else "")
    return f"{what} is ready: choose models and press **Derain**."


def check_photo(image: Any, gt: Any) -> PhotoCheck:
    """The photo checked the moment it arrives (the core's loader): an unreadable file is removed
    and a plain-language message shown under it; a good one clears stale messages and the status."""
    path = _upload_path(image)
    if path is None:  # removed (by the user, or just now by this check): keep the reason in view
        return PhotoCheck(inp=gr.skip(), inp_msg=gr.skip(),
                          gt_msg=_message(None) if _upload_path(gt) else gr.skip(), status=gr.skip())
    problem = compare.upload_problem(path, "photo")
    if problem:
        return PhotoCheck(inp=None, inp_msg=_message(problem), gt_msg=gr.skip(), status=READY)
    return PhotoCheck(inp=gr.skip(), inp_msg=_message(None),
                      gt_msg=_message(compare.size_problem(path, _upload_path(gt))), status=_ready(image))


def check_truth(image: Any, gt: Any) -> TruthCheck:
    """The ground truth checked the moment it arrives, as :func:`check_photo`, and against the
    photo's size; its accordion opens (an example may have put it there)."""
    path = _upload_path(gt)
    if path is None:
        return TruthCheck(gt=gr.skip(), gt_msg=gr.skip(), status=gr.skip(), more_inputs=gr.skip())
    unreadable = compare.upload_problem(path, "ground truth")
    problem = unreadable or compare.size_problem(_upload_path(image), path)
    if problem:
        status = "The ground truth needs attention: see the message under it."
    else:
        status = _ready(image) if _upload_path(image) else READY
    return TruthCheck(gt=None if unreadable else gr.skip(), gt_msg=_message(problem), status=status,
                      more_inputs=gr.Accordion(open=True))


def clear_message() -> gr.Markdown:
    """The user removed a file: its message goes too."""
    return _message(None)


def busy() -> tuple[gr.Button, gr.Button]:
    """The Derain button while a run is in flight (and Cancel shown)."""
    return gr.Button(value=BUSY_LABEL, interactive=False), gr.Button(value=CANCEL_LABEL, interactive=True, visible=True)


def idle() -> tuple[gr.Button, gr.Button]:
    """The Derain button back after a run ends, fails or is cancelled (and Cancel hidden)."""
    return gr.Button(value=RUN_LABEL, interactive=True), gr.Button(visible=False)


def show_estimate(image: Any, models: list[str] | None, full_res: bool) -> str:
    """The expected time of the run the Derain button would start (reads the photo's header only)."""
    exp = compare.expected(_upload_path(image), models, bool(full_res), device="cuda" if ZERO_GPU else None)
    if exp is None:
        return ""
    shrunk = "" if exp.processed_size == exp.original_size else \
        f" (downscaled from {exp.original_size[0]}x{exp.original_size[1]})"
    return f"Expected: {exp.text}{shrunk}"


def overlay_control(st: RunState | None, model_id: str | None, group: str | None):
    """The overlay checkbox for the shown group: usable only when a map in it can be laid over the photo."""
    maps = None if st is None else st.maps(model_id)
    if maps is None:
        return gr.skip()
    grouped = viz.group_specs(maps.specs, default="other")
    chosen = grouped.get(group) or next(iter(grouped.values()))
    if any(viz.can_overlay(maps.maps[s.key], s) for s in chosen):
        return gr.Checkbox(interactive=True, info=None)
    return gr.Checkbox(value=False, interactive=False, info="Images in this group are shown as they are.")


# --------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------
INTRO = """# Single-image deraining: five networks side by side
Upload a rainy photo or pick an example, choose models, press **Derain**. Each result appears as its model
finishes; then compare them: metrics, before/after slider, zoom and each network's intermediate maps.
"""

# The zoom crops (scoped to their gr.HTML): each figure at its image's own size, wrapping to the width.
CROPS_CSS = """
.crops-note { margin: 0 0 8px; font-size: 15px; }
.crops-row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.crop { margin: 0; max-width: 100%; overflow-x: auto; }
.crop figcaption { font-size: 16px; font-weight: normal; margin-bottom: 4px; }
.crop img { display: block; max-width: none; image-rendering: pixelated; }
"""


# The maps (scoped to their gr.HTML): each picture at its own size, narrowed only to fit the page;
# a caption as wide as its picture.
MAPS_CSS = """
.maps-row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.map { margin: 0; max-width: 100%; width: fit-content; }
.map img { display: block; max-width: 100%; height: auto; }
.map figcaption { width: 0; min-width: 100%; font-size: 14px; margin-top: 4px; }
"""


def build() -> gr.Blocks:
    """The whole app as a ``gr.Blocks``: the inputs and Derain on the first screen, optional inputs
    folded away, results shown once there are some, examples after them."""
    examples, example_labels = _load_examples()
    model_choices = _model_choices()
    with gr.Blocks(title="Deraining: five networks compared", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as app:
        state = gr.State(None, time_to_live=3600)
        gr.Markdown(INTRO, elem_id="intro")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                inp = gr.Image(label="Rainy photo", type="filepath", image_mode=None, format="png",
                               sources=["upload", "clipboard"], elem_id="inp", height=240)
                inp_msg = gr.Markdown("", visible=False, elem_id="inp-msg")
                models = gr.CheckboxGroup(model_choices, value=[m for _, m in model_choices],
                                          label="Models", elem_id="models")
                full_res = gr.Checkbox(False, label="Full resolution (slower)", elem_id="full-res",
                                       info=f"Off: photos longer than {compare.WORKING_MAX_SIDE} px are "
                                            "processed at that size.")
                with gr.Row():
                    run_btn = gr.Button(RUN_LABEL, variant="primary", elem_id="run-btn", scale=3)
                    cancel_btn = gr.Button(CANCEL_LABEL, variant="stop", elem_id="cancel-btn", scale=1, min_width=80,
                                           visible=False)
                estimate_md = gr.Markdown("", elem_id="estimate")
                with gr.Accordion("Ground truth and weights variant (optional)", open=False,
                                  elem_id="more-inputs") as more_inputs:
                    gt = gr.Image(label="Clean ground truth (same size as the photo)", type="filepath",
                                  image_mode=None, format="png", sources=["upload", "clipboard"],
                                  elem_id="gt", height=200)
                    gt_msg = gr.Markdown("", visible=False, elem_id="gt-msg")
                    variant = gr.Dropdown(_variant_choices(), value=DEFAULT_VARIANT, label="Weights variant",
                                          info="A variant a model does not ship falls back to its default.",
                                          elem_id="variant")
            with gr.Column(scale=3, min_width=320):
                status = gr.Markdown(READY, elem_id="status")
                with gr.Accordion(report.EXPECTATIONS_TITLE, open=False, elem_id="expectations-box"):
                    expect = gr.Markdown(_expectations((m, None) for _, m in model_choices), elem_id="expectations")
                with gr.Column(visible=False, elem_id="results") as results_box:
                    show = gr.Radio(list(viz.SHOW_CHOICES), value=viz.SHOW_OUTPUT, label="Show", elem_id="show",
                                    info="each model's output, or what it removed (input minus output on "
                                         "mid-grey), true scale or amplified")
                    grid = gr.Image(label="Input and outputs (time and metrics drawn on each tile)",
                                    show_label=False, format="png", interactive=False, elem_id="grid",
                                    buttons=["download", "fullscreen"])
                    table = gr.Dataframe(label="Metrics", interactive=False, elem_id="metrics", wrap=True)
                    details = gr.Markdown("", elem_id="details")
                    gr.Markdown(report.METRICS_NOTE, elem_id="metrics-note")
                    with gr.Column(visible=False, elem_id="zip-box") as zip_box:
                        zip_file = gr.DownloadButton("Download everything (zip)", elem_id="zip", variant="secondary")
                        gr.Markdown("The zip holds the input, the ground truth, every output and what it removed, "
                                    "the last zoom's crops, the maps you viewed, and the metrics as CSV and JSON.",
                                    elem_id="zip-note")

                    gr.Markdown("### Before / after")
                    slider_model = gr.Dropdown(choices=[], label="Output to compare with the input",
                                               elem_id="slider-model")
                    slider = gr.ImageSlider(label=SLIDER_LABEL, format="png", interactive=False,
                                            elem_id="slider", max_height=480)
                if examples:  # after the results: on a phone they never sit between Derain and the results
                    gr.Examples(examples, inputs=[inp, gt], example_labels=example_labels,
                                label="Examples: click one to load it (with its ground truth when it has one)",
                                examples_per_page=8, elem_id="examples")

        # The page's whole width, so that crops and maps are shown at their own size
        with gr.Column(visible=False, elem_id="explore") as explore_box:
            gr.Markdown("### Zoom: click a point on the photo to compare the same crop everywhere")
            with gr.Row():
                zoom_src = gr.Image(label="Click a point", format="png", interactive=False,
                                    elem_id="zoom-src", scale=3, height=420)
                with gr.Column(scale=1, min_width=200):
                    factor = gr.Radio(ZOOM_FACTORS, value=4, label="Zoom (nearest neighbour)",
                                      elem_id="zoom-factor")
                    crop = gr.Slider(8, 128, value=40, step=4, label="Crop size (px of the input)",
                                     elem_id="zoom-size")
            crops = gr.HTML(ZOOM_HINT, elem_id="crops", css_template=CROPS_CSS, js_on_load=None)

            gr.Markdown("### Inspector: intermediate maps of one model")
            with gr.Row():
                insp_model = gr.Dropdown(choices=[], label="Model", allow_custom_value=True,
                                         elem_id="insp-model")
                insp_group = gr.Dropdown(choices=[], label="Group (stage / scale / branch)",
                                         allow_custom_value=True, elem_id="insp-group")
                insp_overlay = gr.Checkbox(False, label="Overlay on the photo", elem_id="insp-overlay")
                insp_across = gr.Checkbox(False, label="Compare across scales / stages", elem_id="insp-across",
                                          info="The group's first map beside its siblings, one colour scale")
                insp_stretch = gr.Checkbox(False, label="Stretch attention colours", elem_id="insp-stretch",
                                           info="Attention between its 1st and 99th percentile instead of 0 to 1, "
                                           "so that small differences show")
            insp_note = gr.Markdown(INSPECT_HINT, elem_id="insp-note")
            with gr.Column(visible=False, elem_id="maps-box") as maps_box:
                maps = gr.HTML("", elem_id="maps", css_template=MAPS_CSS, js_on_load=None)

            gr.Markdown("### Outputs (clean, lossless PNG; the zip has them at full size)")
            outputs = gr.Gallery(label="Outputs (clean, lossless PNG)", show_label=False, format="png",
                                 columns=4, height="auto", object_fit="contain", elem_id="outputs",
                                 interactive=False)

        ui = {"status": status, "grid": grid, "outputs": outputs, "table": table, "zip": zip_file,
              "slider_model": slider_model, "slider": slider, "zoom_src": zoom_src, "insp_model": insp_model,
              "crops": crops, "insp_group": insp_group, "maps": maps, "insp_note": insp_note, "expect": expect,
              "details": details, "results_box": results_box, "explore_box": explore_box, "zip_box": zip_box,
              "maps_box": maps_box,
              "state": state, "inp": inp, "inp_msg": inp_msg, "gt": gt, "gt_msg": gt_msg,
              "more_inputs": more_inputs}

        def named(returns: type[tuple]) -> list:
            """The output components in the order of a handler's named tuple."""
            return [ui[name] for name in returns._fields]

        # Derain: the button shows the run is in flight, and comes back however the run ends
        buttons = {"inputs": None, "outputs": [run_btn, cancel_btn], "api_visibility": "private",
                   "queue": False, "show_progress": "hidden"}
        run_event = run_btn.click(busy, **buttons).then(
            run, [inp, gt, models, variant, state, full_res], named(RunOutputs), api_name="derain",
            preprocess=False, concurrency_limit=1, concurrency_id="torch", show_progress="full",
            show_progress_on=[status])
        run_event.success(idle, **buttons)  # (Gradio 6.31's page does not fire .then after an error)
        run_event.failure(idle, **buttons)  # an error, and a cancel, end here
        if ZERO_GPU:  # the run is in a GPU worker process the session's token cannot reach: Gradio stops it
            cancel_btn.click(cancel_run, None, cancel_btn, cancels=[run_event], api_name="cancel",
                             concurrency_limit=None).then(idle, **buttons).then(
                cancelled_status, status, status, api_visibility="private", queue=False, show_progress="hidden")
        else:  # the run stops itself within a tile and ends normally (its page says so; .success brings idle)
            cancel_btn.click(cancel_run, None, cancel_btn, api_name="cancel", concurrency_limit=None,
                             show_progress="hidden")

        # uploads are checked the moment they arrive (no preprocessing: a bad file reaches the check)
        checks = {"api_visibility": "private", "preprocess": False, "show_progress": "hidden",
                  "concurrency_limit": None}
        inp.change(check_photo, [inp, gt], named(PhotoCheck), **checks)
        gt.change(check_truth, [inp, gt], named(TruthCheck), **checks)
        inp.clear(clear_message, None, inp_msg, api_visibility="private", queue=False)
        gt.clear(clear_message, None, gt_msg, api_visibility="private", queue=False)
        for i, ctl in enumerate((inp, models, full_res)):
            ctl.change(show_estimate, [inp, models, full_res], estimate_md, concurrency_limit=None,
                       show_progress="hidden", **({"api_name": "estimate"} if i == 0 else {"api_visibility": "private"}))
        slider_model.input(show_slider, [state, slider_model], slider, api_visibility="private")
        show.input(change_view, [state, show, slider_model], [grid, outputs, slider, state], api_visibility="private")
        zip_later = {"fn": refresh_zip, "inputs": [state], "outputs": zip_file, "api_visibility": "private",
                     "show_progress": "hidden"}
        zoom_src.select(zoom_click, [state, factor, crop], [*named(ZoomOutputs), state],
                        api_visibility="private").then(**zip_later)
        factor.input(zoom_settings, [state, factor, crop], named(ZoomOutputs), api_visibility="private").then(**zip_later)
        crop.release(zoom_settings, [state, factor, crop], named(ZoomOutputs), api_visibility="private").then(**zip_later)
        insp_model.input(inspect_model, [state, insp_model, insp_group, insp_overlay, insp_stretch],
                          named(InspectOutputs), api_name="inspect",
                          concurrency_limit=1, concurrency_id="torch").then(
            overlay_control, [state, insp_model, insp_group], insp_overlay, api_visibility="private").then(
            redraw_across, [state, insp_model, insp_group, insp_overlay, insp_across, insp_stretch], [maps, insp_note],
            api_visibility="private").then(**zip_later)
        insp_group.input(overlay_control, [state, insp_model, insp_group], insp_overlay, api_visibility="private")
        for ctl in (insp_group, insp_overlay, insp_across, insp_stretch):
            ctl.input(change_group, [state, insp_model, insp_group, insp_overlay, insp_across, insp_stretch],
                      [maps, insp_note],
                       api_visibility="private").then(**zip_later)
    app.queue(default_concurrency_limit=4, max_size=32)
    return app


if ZERO_GPU:  # ZeroGPU's documented pattern: models on CUDA at start-up; the GPU attaches per call
    compare.preload(device="cuda")
demo = build()


def main(argv: list[str] | None = None) -> None:
    """Start the app (``--host``, ``--port``; ``--share`` makes a public link, off by default)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860, or GRADIO_SERVER_PORT)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (needs network)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if not ZERO_GPU:  # time one cheap model once, so the estimates follow this machine
        threading.Thread(target=compare.calibrate_estimates, daemon=True,
                         name="derain-calibrate").start()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD)


if __name__ == "__main__":
    main()
