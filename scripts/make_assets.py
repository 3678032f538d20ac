#!/usr/bin/env python
"""Regenerate the demo assets in ``assets/examples`` (deterministic).

Clean photos come from ``skimage.data`` (public domain / CC0 only, see SOURCES); each is
cropped and resized to about 481x321 and rendered with the synthetic rain presets of
``derain_core.synth``. Written per example:

* ``<name>_clean.png``: the clean ground truth (8-bit RGB PNG);
* ``<name>_<preset>_rainy.png``: the rainy image made from exactly that clean PNG;
* ``<name>_<preset>.json``: generator parameters, seed, source image, crop and license;

plus ``index.json`` listing every example and two "no ground truth" examples (rainy
images whose clean crop is deliberately not shipped, standing in for real uploads).
No image from the Rain100L data is used.

Usage::

    .venv/bin/python scripts/make_assets.py            # rewrite assets/examples
    .venv/bin/python scripts/make_assets.py --check    # compare with the committed files
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derain_core import synth  # noqa: E402

OUT = ROOT / "assets" / "examples"
SIZE = (481, 321)  # width, height of the examples with ground truth (Rain100L's size)

# name -> skimage.data function, title, credit, license, source URL, dominant rain angle
SOURCES: dict[str, dict] = {
    "astronaut": dict(
        func="astronaut", title="Astronaut (Eileen Collins)",
        credit="NASA (NASA Great Images database)", url="https://flic.kr/p/r9qvLn",
        license="Public domain (no known copyright restrictions; skimage.data.astronaut docstring)",
        angle=-10.0),
    "coffee": dict(
        func="coffee", title="Coffee cup",
        credit="Rachel Michetti, courtesy of Pikolo Espresso Bar", url=None,
        license="CC0 (skimage.data.coffee docstring: 'No copyright restrictions. CC0 by the photographer')",
        angle=8.0),
    "chelsea": dict(
        func="chelsea", title="Chelsea the cat",
        credit="Stefan van der Walt", url=None,
        license="CC0 (skimage.data.chelsea docstring: 'No copyright restrictions. CC0 by the photographer')",
        angle=-18.0),
    "rocket": dict(
        func="rocket", title="Falcon 9 / DSCOVR launch",
        credit="SpaceX", url="https://www.flickr.com/photos/spacexphotos/16511594820/",
        license="Public domain (released by SpaceX; skimage.data.rocket docstring)",
        angle=12.0),
}
PRESET_NAMES = ("light", "heavy", "storm")

# Examples without ground truth: native-resolution crops (left, top, right, bottom), not resized.
NO_GT = {
    "rocket_pad": dict(source="rocket", box=(100, 107, 580, 427), preset="storm", angle=-14.0,
                       title="Launch pad in a storm (no ground truth)"),
    "coffee_table": dict(source="coffee", box=(60, 40, 540, 360), preset="heavy", angle=18.0,
                         title="Coffee in heavy rain (no ground truth)"),
}


def load_source(name: str) -> np.ndarray:
    import skimage.data

    return np.asarray(getattr(skimage.data, SOURCES[name]["func"])())[..., :3]


def fit(img: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """Centre-crop to the aspect of ``size`` and resize down (Lanczos) if larger.

    Returns the uint8 image and a dict describing the crop/resize.
    """
    h, w = img.shape[:2]
    tw, th = size
    aspect = tw / th
    if w / h > aspect:
        cw, ch = int(round(h * aspect)), h
    else:
        cw, ch = w, int(round(w / aspect))
    left, top = (w - cw) // 2, 0  # centre horizontally, keep the top (the astronaut's face)
    box = (left, top, left + cw, top + ch)
    im = Image.fromarray(img).crop(box)
    if cw > tw:
        im = im.resize(size, Image.LANCZOS)
    out = np.asarray(im, np.uint8)
    return out, {"crop_box_ltrb": list(box), "resized_to_wh": [out.shape[1], out.shape[0]]}


def to_u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def render(clean_u8: np.ndarray, params: synth.RainParams) -> np.ndarray:
    rainy, _ = synth.add_rain(clean_u8.astype(np.float32) / 255.0, params)
    return to_u8(rainy)


def build() -> dict[str, object]:
    """All files as ``{filename: np.ndarray (PNG) | dict (JSON)}``."""
    import skimage

    files: dict[str, object] = {}
    index = []
    for name, src in SOURCES.items():
        clean, geo = fit(load_source(name), SIZE)
        files[f"{name}_clean.png"] = clean
        source = {"skimage_data": f"skimage.data.{src['func']}", "scikit_image_version": skimage.__version__,
                  "credit": src["credit"], "url": src["url"], "license": src["license"], **geo}
        for pname in PRESET_NAMES:
            params = synth.preset(pname, seed=synth.stable_seed(f"{name}/{pname}"), angle=src["angle"])
            stem = f"{name}_{pname}"
            files[f"{stem}_rainy.png"] = render(clean, params)
            meta = {"title": f"{src['title']}, {pname} rain", "rainy": f"{stem}_rainy.png",
                    "clean": f"{name}_clean.png", "preset": pname, "generator": "derain_core.synth.add_rain",
                    "params": params.to_dict(), "source": source}
            files[f"{stem}.json"] = meta
            index.append({"id": stem, "title": meta["title"], "file": meta["rainy"], "gt": meta["clean"],
                          "preset": pname, "params": f"{stem}.json", "source": name, "has_gt": True})
    for name, spec in NO_GT.items():
        src = SOURCES[spec["source"]]
        clean = np.asarray(Image.fromarray(load_source(spec["source"])).crop(spec["box"]), np.uint8)
        params = synth.preset(spec["preset"], seed=synth.stable_seed(f"{name}/{spec['preset']}"),
                              angle=spec["angle"])
        stem = f"{name}_{spec['preset']}"
        files[f"{stem}_rainy.png"] = render(clean, params)
        source = {"skimage_data": f"skimage.data.{src['func']}", "scikit_image_version": skimage.__version__,
                  "credit": src["credit"], "url": src["url"], "license": src["license"],
                  "crop_box_ltrb": list(spec["box"]), "resized_to_wh": [clean.shape[1], clean.shape[0]]}
        meta = {"title": spec["title"], "rainy": f"{stem}_rainy.png", "clean": None, "preset": spec["preset"],
                "generator": "derain_core.synth.add_rain", "params": params.to_dict(), "source": source,
                "note": "Ground truth deliberately not shipped: stands in for a real rainy photo upload."}
        files[f"{stem}.json"] = meta
        index.append({"id": stem, "title": spec["title"], "file": meta["rainy"], "gt": None,
                      "preset": spec["preset"], "params": f"{stem}.json", "source": spec["source"],
                      "has_gt": False})
    files["index.json"] = {
        "description": "Demo examples: synthetic rain (derain_core.synth) on clean scikit-image photos. "
                       "'gt' is the clean ground truth file or null; paths are relative to this folder. "
                       "Regenerate with scripts/make_assets.py.",
        "examples": index}
    return files


def write(files: dict[str, object], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("*.png")) + list(out.glob("*.json")):
        if old.name not in files:
            old.unlink()
    for fname, obj in files.items():
        if isinstance(obj, np.ndarray):
            Image.fromarray(obj).save(out / fname, optimize=True)
        else:
            (out / fname).write_text(json.dumps(obj, indent=2) + "\n")


def check(files: dict[str, object], out: Path) -> int:
    """Compare regenerated content with the files on disk; returns the number of mismatches."""
    bad = 0
    for fname, obj in files.items():
        p = out / fname
        if not p.is_file():
            print(f"MISSING {fname}")
            bad += 1
            continue
        if isinstance(obj, np.ndarray):
            disk = np.asarray(Image.open(p).convert("RGB"), np.int16)
            diff = int(np.abs(disk - obj.astype(np.int16)).max()) if disk.shape == obj.shape else 255
            if diff > 1:  # FFT round-off may move a value by one level across platforms
                print(f"DIFF {fname}: max {diff}")
                bad += 1
        elif json.loads(p.read_text()) != json.loads(json.dumps(obj)):
            print(f"DIFF {fname}")
            bad += 1
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default assets/examples)")
    ap.add_argument("--check", action="store_true", help="only compare with the files in --out")
    args = ap.parse_args(argv)
    files = build()
    if args.check:
        bad = check(files, args.out)
        print("assets up to date" if not bad else f"{bad} file(s) differ")
        return 1 if bad else 0
    write(files, args.out)
    total = sum(p.stat().st_size for p in args.out.parent.rglob("*") if p.is_file())
    print(f"wrote {len(files)} files to {args.out}; assets/ total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
