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
import dataclasses
import logging
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (or on Spaces) without installing the package
    sys.path.insert(0, str(ROOT))

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import derain_core as dc  # noqa: E402
from derain_core import engine, io, metrics, report, viz  # noqa: E402
from derain_core import weights as wts  # noqa: E402
from derain_core.dashboard_data import load_examples  # noqa: E402

log = logging.getLogger("derain.gradio")

# Inference keeps torch's default thread count unless DERAIN_THREADS says otherwise.
if os.environ.get("DERAIN_THREADS"):
    torch.set_num_threads(max(1, int(os.environ["DERAIN_THREADS"])))

DISPLAY_MAX_SIDE = int(os.environ.get("DERAIN_DISPLAY_MAX_SIDE", 1280))  # on-screen copies only
TILE_MAX_SIDE, TILE_MIN_SIDE = 400, 300  # each tile of the side-by-side grid (small images enlarged)
TILE_FONT = 20  # text on the grid tiles (px), readable when the grid is shown scaled down
ZOOM_MIN_SIDE = 480  # the clickable photo: small images enlarged so a point is easy to pick
MAPS_OVERLAY_SIDE = 512  # input copy the maps are laid over
MAX_UPLOAD = "50mb"
RUNS_DIR = Path(tempfile.gettempdir()) / "derain_gradio_runs"
RUN_MAX_AGE_S = 3600
DEFAULT_VARIANT = "default (each model's own)"
INSPECT_HINT = "Pick a model that has run to see its intermediate maps (computed on demand, cached per photo)."
ZOOM_FACTORS = [2, 3, 4, 6, 8]


# --------------------------------------------------------------------------------------
# Choices shown in the UI
# --------------------------------------------------------------------------------------
def _model_choices() -> list[tuple[str, str]]:
    """(label, id) per model; models without any shipped weights say "untrained"."""
    out = []
    for card in dc.list_models():
        trained = bool(wts.available_variants(card.id))
        out.append((f"{card.name}{'' if trained else ' (untrained)'} · {card.year}", card.id))
    return out


def _variant_choices() -> list[str]:
    names = sorted({v for m in dc.MODEL_IDS for v in wts.available_variants(m)})
    return [DEFAULT_VARIANT, *names, engine.UNTRAINED]


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


def _load(path: str, what: str) -> io.LoadedImage:
    try:
        return io.load_image(path)
    except io.ImageLoadError as exc:
        raise gr.Error(f"Could not read the {what}: {exc}", title="Unreadable image") from None


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
    img, _ = report.display_copy(rgb, DISPLAY_MAX_SIDE, min_side)
    path = folder / f"{report.safe_name(name)}.png"
    Image.fromarray(img).save(path)
    return str(path)


def _shown(scale: float) -> str:
    return "" if scale >= 1.0 else f" (shown at {scale:.0%})"


def _grid_image(st: dict) -> Any:
    """The side-by-side picture: input, ground truth, then every finished output."""
    def tile(rgb):
        return report.display_copy(rgb, TILE_MAX_SIDE, TILE_MIN_SIDE)[0]

    images, labels, texts = [tile(st["image"].rgb)], ["input"], [report.tile_text(metrics=st["input_metrics"])]
    if st["gt"] is not None:
        images.append(tile(st["gt"].rgb))
        labels.append("ground truth")
        texts.append("")
    for r in st["results"]:
        images.append(tile(r.output))
        labels.append(r.label)
        texts.append(report.tile_text(r))
    n = len(images)
    cols = n if n <= 3 else -(-n // 2)
    return viz.labelled_grid(images, labels, texts, cols=cols, font_size=TILE_FONT)


def _gallery(st: dict) -> list[tuple[str, str]]:
    """Clean images (no text drawn on them) for the full-size gallery."""
    note = _shown(min(1.0, DISPLAY_MAX_SIDE / max(st["image"].width, st["image"].height)))
    items = [(st["files"]["input"], "input" + note)]
    if st["gt"] is not None:
        items.append((st["files"]["gt"], "ground truth" + note))
    for r in st["results"]:
        items.append((st["files"][r.model_id], r.label + note))
    return items


def _table(st: dict) -> pd.DataFrame:
    header, rows = report.metrics_table(st["results"])
    return pd.DataFrame(rows, columns=header)


def _result(st: dict, model_id: str | None):
    for r in st.get("results", []):
        if r.model_id == model_id:
            return r
    return None


def _slider_value(st: dict, model_id: str | None):
    r = _result(st, model_id)
    return None if r is None else (st["files"]["input"], st["files"][r.model_id])


def _status(st: dict, running: str | None, n_total: int, failures: list[str], started: float) -> str:
    img = st["image"]
    lines = [f"**Image** {img.name}: {img.width}×{img.height}, {img.bit_depth}-bit"
             + (" with alpha" if img.alpha is not None else "")
             + (f" · ground truth {st['gt'].name}" if st["gt"] is not None else " · no ground truth (PSNR/SSIM need one)")]
    done = len(st["results"])
    if running:
        lines.append(f"**Running** {running} ({done + len(failures) + 1}/{n_total}) …")
    else:
        lines.append(f"**Done**: {done} of {n_total} models in {time.perf_counter() - started:.1f} s")
    if st["results"]:
        lines.append("**Ran on** " + report.run_summary(st["results"]))
        untrained = [r.label for r in st["results"] if not r.trained]
        if untrained:
            lines.append("**Untrained** (random weights, outputs are not meaningful): " + ", ".join(untrained))
        if st["variant"] not in (None, engine.UNTRAINED):
            other = [f"{r.label}: {r.variant}" for r in st["results"] if r.variant != st["variant"]]
            if other:
                lines.append(f"Variant {st['variant']!r} not shipped for some models, used their default: "
                             + ", ".join(other))
    for f in failures:
        lines.append(f"⚠️ {f}")
    return "\n\n".join(lines)


# --------------------------------------------------------------------------------------
# Event handlers
# --------------------------------------------------------------------------------------
@GPU
def run(image: Any, gt: Any, models: list[str] | None, variant: str | None, st: dict | None,
        progress: gr.Progress = gr.Progress()):
    """Derain ``image`` with every chosen model, yielding the page after each model."""
    path, gt_path = _upload_path(image), _upload_path(gt)
    if not path:
        raise gr.Error("Upload a rainy photo or pick an example first.", title="No image")
    if not models:
        raise gr.Error("Choose at least one model.", title="No model")
    unknown = [m for m in models if m not in dc.MODEL_IDS]
    if unknown:
        raise gr.Error(f"Unknown model(s): {', '.join(unknown)}; choose from {', '.join(dc.MODEL_IDS)}.")
    variant = None if variant in (None, "", DEFAULT_VARIANT) else variant
    if variant is not None and variant not in _variant_choices():
        raise gr.Error(f"Unknown weights variant {variant!r}; choose from {', '.join(_variant_choices())}.")
    img = _load(path, "photo")
    gt_img = _load(gt_path, "ground truth") if gt_path else None
    if gt_img is not None and gt_img.rgb.shape != img.rgb.shape:
        raise gr.Error(f"The ground truth is {gt_img.width}×{gt_img.height} but the photo is "
                       f"{img.width}×{img.height}; they must be the same size.", title="Size mismatch")

    digest = wts.sha256_of(path)
    prev = st or {}
    maps_cache = prev.get("maps", {}) if prev.get("digest") == digest else {}
    disp, disp_scale = report.display_copy(img.rgb, DISPLAY_MAX_SIDE, ZOOM_MIN_SIDE)
    folder = _new_run_dir()
    files = {"input": _display_png(folder, "input", img.rgb),
             "zoom": _display_png(folder, "zoom_source", img.rgb, ZOOM_MIN_SIDE)}
    if gt_img is not None:
        files["gt"] = _display_png(folder, "ground_truth", gt_img.rgb)
    st = {"digest": digest, "image": img, "gt": gt_img, "variant": variant, "results": [], "files": files,
          "maps": maps_cache, "display": disp, "display_scale": disp_scale, "point": None,
          "input_metrics": metrics.compute_metrics(img.rgb, gt_img.rgb if gt_img is not None else None)}
    started = time.perf_counter()
    failures: list[str] = []
    skip = gr.skip()
    sent = {"slider": False}  # the slider gets its first output once

    def page(running: str | None, stage: str):
        """All outputs; ``stage`` is "start" (clears the old run), "more" or "end"."""
        ids = [(r.label, r.model_id) for r in st["results"]]
        zoom_val = files["zoom"] if stage == "start" else skip
        if stage == "start":
            slider_dd, slider_val = gr.Dropdown(choices=[], value=None), None
        elif ids and not sent["slider"]:  # first result: show it in the before/after slider
            sent["slider"] = True
            slider_dd, slider_val = gr.Dropdown(choices=ids, value=ids[0][1]), _slider_value(st, ids[0][1])
        else:
            slider_dd, slider_val = gr.Dropdown(choices=ids), skip
        zip_path = None if stage == "start" else skip
        if stage == "end":
            data = report.zip_bytes(st["results"], img, gt_img,
                                    extra={"variant_asked": variant or "default", "app": "gradio"})
            zip_path = folder / f"derain_{report.safe_name(Path(img.name).stem)}.zip"
            zip_path.write_bytes(data)
            zip_path = str(zip_path)
        return (
            _status(st, running, len(models), failures, started),
            _grid_image(st),
            _gallery(st),
            _table(st),
            zip_path,
            slider_dd,
            slider_val,
            zoom_val,
            gr.Dropdown(choices=ids, value=None) if stage == "start" else gr.Dropdown(choices=ids),
            None if stage == "start" else skip,
            gr.Dropdown(choices=[], value=None) if stage == "start" else skip,
            [] if stage == "start" else skip,
            INSPECT_HINT if stage == "start" else skip,
            st,
        )

    progress(0, desc="loading models")
    yield page(dc.get_card(models[0]).name, "start")
    for i, model_id in enumerate(models):
        name = dc.get_card(model_id).name
        progress(i / len(models), desc=f"{name} ({i + 1}/{len(models)})")
        try:
            result = next(engine.iter_derain(img, [model_id], variant, gt_img))
        except (ValueError, RuntimeError, MemoryError) as exc:  # one model failing must not stop the others
            log.exception("model %s failed", model_id)
            failures.append(f"{name} failed: {exc}")
            continue
        files[model_id] = _display_png(folder, model_id, result.output)
        st["results"].append(result)
        if i + 1 < len(models):
            yield page(dc.get_card(models[i + 1]).name, "more")
    if not st["results"]:
        raise gr.Error("Every model failed: " + "; ".join(failures), title="Run failed")
    progress(1.0, desc="done")
    yield page(None, "end")


def show_slider(st: dict | None, model_id: str | None):
    """Before/after pair for the chosen output."""
    if not st or _result(st, model_id) is None:
        return None
    return _slider_value(st, model_id)


def _zoom_picture(st: dict, factor: int, crop: int):
    images, labels = [st["image"].rgb], ["input"]
    if st["gt"] is not None:
        images.append(st["gt"].rgb)
        labels.append("ground truth")
    for r in st["results"]:
        images.append(r.output)
        labels.append(r.label)
    point = st["point"]
    strip = viz.crops_strip(images, point, crop, zoom=int(factor), labels=labels)
    s = st["display_scale"]
    marked = viz.mark_point(st["display"], (point[0] * s, point[1] * s), max(2, round(crop * s)))
    return marked, strip


def zoom_click(st: dict | None, factor: int, crop: int, evt: gr.SelectData):
    """Clicked point on the (display copy of the) input: the same crop from every image."""
    if not st or "image" not in st:
        raise gr.Error("Run the models first, then click on the photo to compare crops.", title="Nothing to zoom")
    x, y = evt.index[:2]
    s = st["display_scale"]
    st["point"] = (min(x / s, st["image"].width - 1), min(y / s, st["image"].height - 1))
    marked, strip = _zoom_picture(st, factor, crop)
    return marked, strip, st


def zoom_settings(st: dict | None, factor: int, crop: int):
    """Redraw the crops at a new zoom factor or crop size (if a point was clicked)."""
    if not st or not st.get("point"):
        return gr.skip(), gr.skip()
    return _zoom_picture(st, factor, crop)


@GPU
def inspect_model(st: dict | None, model_id: str | None, group: str | None, show_overlay: bool):
    """Intermediate maps of one model (computed on demand, cached per image)."""
    if not model_id:
        return gr.Dropdown(choices=[], value=None), [], INSPECT_HINT, gr.skip()
    r = _result(st or {}, model_id)
    if r is None:
        raise gr.Error("That model has no result for this photo; run it first.", title="Nothing to inspect")
    key = (model_id, r.variant)
    if key not in st["maps"]:
        try:  # only the maps pass (a preview pass for big photos); the output is already known
            loaded = engine.MODELS.get(model_id, r.variant)
            maps, scale = engine.run_maps(loaded, io.to_tensor(st["image"].rgb).to(loaded.device))
        except (ValueError, RuntimeError, MemoryError) as exc:
            log.exception("maps of %s failed", model_id)
            raise gr.Error(f"Could not compute the maps of {r.label}: {exc}") from None
        res = dataclasses.replace(r, maps=maps, map_specs=loaded.net.map_specs(), maps_scale=scale)
        st["maps"][key] = (res.maps, res.map_specs, res.maps_note)
    groups = list(viz.group_specs(st["maps"][key][1], default="other"))
    group = group if group in groups else groups[0]
    items, note = render_maps(st, key, group, show_overlay)
    return gr.Dropdown(choices=groups, value=group), items, note, st


def change_group(st: dict | None, model_id: str | None, group: str | None, show_overlay: bool):
    """Redraw the cached maps for another group or overlay setting."""
    r = _result(st or {}, model_id)
    if r is None or (model_id, r.variant) not in st["maps"]:
        return gr.skip(), gr.skip()
    return render_maps(st, (model_id, r.variant), group, show_overlay)


def render_maps(st: dict, key: tuple[str, str], group: str | None, show_overlay: bool):
    maps, specs, note = st["maps"][key]
    grouped = viz.group_specs(specs, default="other")
    chosen = grouped.get(group) or next(iter(grouped.values()))
    base = report.display_copy(st["image"].rgb, MAPS_OVERLAY_SIDE)[0] if show_overlay else None
    items = []
    for spec in chosen:
        if spec.key not in maps:
            continue
        pic = viz.render_map(maps[spec.key], spec, image=base, overlay_alpha=0.55 if show_overlay else None,
                             size=256)
        items.append((pic, f"{spec.title}: {spec.meaning}"))
    label = _result(st, key[0]).label
    lines = [f"**{label}** · group **{group}** · {len(items)} map(s) · {note}; each map has its own "
             "colour bar (min / mid / max)."]
    lines += [f"- **{spec.title}**: {spec.meaning}" for spec in chosen if spec.key in maps]
    text = "\n".join(lines)
    return items, text


# --------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------
INTRO = """# Single-image deraining: five networks side by side
Upload a rainy photo (or pick an example), optionally its clean ground truth, choose models and
weights, then **Derain**. Results appear as each model finishes. Below the results: a
before/after slider, synchronised zoom crops (click on the photo) and an inspector of each
network's intermediate maps. Large photos are processed at full resolution (tiled), never downscaled.
"""


def build() -> gr.Blocks:
    """The whole app as a ``gr.Blocks``."""
    examples, example_labels = _load_examples()
    model_choices = _model_choices()
    with gr.Blocks(title="Deraining: five networks compared", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as app:
        state = gr.State(None, time_to_live=3600)
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                inp = gr.Image(label="Rainy photo", type="filepath", image_mode=None, format="png",
                               sources=["upload", "clipboard"], elem_id="inp", height=280)
                gt = gr.Image(label="Clean ground truth (optional, same size)", type="filepath",
                              image_mode=None, format="png", sources=["upload", "clipboard"],
                              elem_id="gt", height=200)
                models = gr.CheckboxGroup(model_choices, value=[m for _, m in model_choices],
                                          label="Models", elem_id="models")
                variant = gr.Dropdown(_variant_choices(), value=DEFAULT_VARIANT, label="Weights variant",
                                      info="A variant a model does not ship falls back to its default.",
                                      elem_id="variant")
                run_btn = gr.Button("Derain", variant="primary", elem_id="run-btn")
                if examples:
                    gr.Examples(examples, inputs=[inp, gt], example_labels=example_labels,
                                label="Examples",
                                examples_per_page=8)
            with gr.Column(scale=3):
                status = gr.Markdown("Upload a photo and press **Derain**.", elem_id="status")
                grid = gr.Image(label="Input and outputs (time and metrics drawn on each tile)",
                                show_label=False, format="png", interactive=False, elem_id="grid",
                                buttons=["download", "fullscreen"])
                table = gr.Dataframe(label="Metrics", interactive=False, elem_id="metrics", wrap=True)
                gr.Markdown(report.METRICS_NOTE, elem_id="metrics-note")
                zip_file = gr.File(label="Download all outputs + metrics (zip)", interactive=False, elem_id="zip",
                                   height=90)

                gr.Markdown("### Before / after")
                slider_model = gr.Dropdown(choices=[], label="Output to compare with the input",
                                           elem_id="slider-model")
                slider = gr.ImageSlider(label="Input | output", format="png", interactive=False,
                                        elem_id="slider", max_height=480)

                gr.Markdown("### Zoom: click a point on the photo to compare the same crop everywhere")
                with gr.Row():
                    zoom_src = gr.Image(label="Click a point", format="png", interactive=False,
                                        elem_id="zoom-src", scale=3)
                    with gr.Column(scale=1, min_width=200):
                        factor = gr.Radio(ZOOM_FACTORS, value=4, label="Zoom (nearest neighbour)",
                                          elem_id="zoom-factor")
                        crop = gr.Slider(8, 128, value=40, step=4, label="Crop size (px of the input)",
                                         elem_id="zoom-size")
                crops = gr.Image(label="Same crop: input, ground truth, outputs", show_label=False, format="png",
                                 interactive=False, elem_id="crops", buttons=["download", "fullscreen"])

                gr.Markdown("### Inspector: intermediate maps of one model")
                with gr.Row():
                    insp_model = gr.Dropdown(choices=[], label="Model", allow_custom_value=True,
                                             elem_id="insp-model")
                    insp_group = gr.Dropdown(choices=[], label="Group (stage / scale / branch)",
                                             allow_custom_value=True, elem_id="insp-group")
                    insp_overlay = gr.Checkbox(False, label="Overlay on the photo", elem_id="insp-overlay")
                insp_note = gr.Markdown(INSPECT_HINT, elem_id="insp-note")
                maps = gr.Gallery(label="Intermediate maps", show_label=False, format="png", columns=3, height="auto",
                                  object_fit="contain", elem_id="maps", interactive=False)

                gr.Markdown("### Outputs (clean, lossless PNG; the zip above has them at full size)")
                outputs = gr.Gallery(label="Outputs (clean, lossless PNG)", show_label=False, format="png", columns=3,
                                     height="auto", object_fit="contain", elem_id="outputs", interactive=False)

        run_btn.click(run, [inp, gt, models, variant, state],
                      [status, grid, outputs, table, zip_file, slider_model, slider, zoom_src, insp_model,
                       crops, insp_group, maps, insp_note, state],
                      api_name="derain", preprocess=False, concurrency_limit=1, concurrency_id="torch",
                      show_progress="full", show_progress_on=[status])
        slider_model.input(show_slider, [state, slider_model], slider, api_visibility="private")
        zoom_src.select(zoom_click, [state, factor, crop], [zoom_src, crops, state], api_visibility="private")
        factor.input(zoom_settings, [state, factor, crop], [zoom_src, crops], api_visibility="private")
        crop.release(zoom_settings, [state, factor, crop], [zoom_src, crops], api_visibility="private")
        insp_model.input(inspect_model, [state, insp_model, insp_group, insp_overlay],
                          [insp_group, maps, insp_note, state], api_name="inspect",
                          concurrency_limit=1, concurrency_id="torch")
        for ctl in (insp_group, insp_overlay):
            ctl.input(change_group, [state, insp_model, insp_group, insp_overlay], [maps, insp_note],
                       api_visibility="private")
    app.queue(default_concurrency_limit=4, max_size=32)
    return app


demo = build()


def main(argv: list[str] | None = None) -> None:
    """Start the app (``--host``, ``--port``; ``--share`` makes a public link, off by default)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860, or GRADIO_SERVER_PORT)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (needs network)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD)


if __name__ == "__main__":
    main()
