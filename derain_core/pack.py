"""A compact lossless pack of paired training images, for carrying data to a GPU machine.

Each pair is stored as the clean image and the rain layer ``(rainy - clean) mod 256``, both as
lossless WebP: the rain layer is mostly zeros and compresses about 4x better than the rainy
image (Rain100L: about 210 KB a pair instead of 520 KB of PNGs). Unpacking restores the
rainy image bit for bit (``clean + layer mod 256``). A pack is split into parts of at most
``max_part_mib`` each so that parts can travel separately; :func:`unpack` takes any parts.

    python -m derain_core.pack ../shared/data/Rain100L_train .pack --max-part-mib 12
    python -m derain_core.pack --unpack .pack/part* --out /tmp/rain100l_train
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .data import find_pairs, load_rgb_uint8


def _webp(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "WEBP", lossless=True, quality=100, method=6)
    return buf.getvalue()


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]


def write_pack(data_dir: str | Path, out_dir: str | Path, max_part_mib: float = 12.0,
               limit: int | None = None) -> list[Path]:
    """Pack the pairs of ``data_dir`` into ``out_dir/part<k>/``; returns the part folders."""
    out = Path(out_dir)
    pairs = find_pairs(data_dir)[:limit]
    parts: list[Path] = []
    entries: list[dict] = []
    size = 0.0

    def close_part() -> None:
        nonlocal entries, size
        if entries:
            (parts[-1] / "index.json").write_text(json.dumps({"pairs": entries}, indent=1) + "\n")
        entries, size = [], 0.0

    for rainy_path, clean_path in pairs:
        rainy = load_rgb_uint8(rainy_path).permute(1, 2, 0).numpy()
        clean = load_rgb_uint8(clean_path).permute(1, 2, 0).numpy()
        if rainy.shape != clean.shape:
            raise ValueError(f"{rainy_path.name}: rainy and clean sizes differ")
        layer = (rainy.astype(np.int16) - clean.astype(np.int16)) % 256
        blobs = {"clean": _webp(clean), "layer": _webp(layer.astype(np.uint8))}
        mib = sum(len(b) for b in blobs.values()) / 2 ** 20
        if not parts or size + mib > max_part_mib:
            close_part()
            parts.append(out / f"part{len(parts)}")
            parts[-1].mkdir(parents=True, exist_ok=True)
        stem = Path(rainy_path).stem
        for kind, blob in blobs.items():
            (parts[-1] / f"{stem}_{kind}.webp").write_bytes(blob)
        entries.append({"name": Path(rainy_path).name, "stem": stem, "rainy_sha": _digest(rainy),
                        "clean_sha": _digest(clean)})
        size += mib
    close_part()
    return parts


def unpack(parts: list[str | Path], out_dir: str | Path) -> int:
    """Restore ``rainy/`` and ``clean/`` PNG folders from pack parts (checked); returns the pair count."""
    out = Path(out_dir)
    (out / "rainy").mkdir(parents=True, exist_ok=True)
    (out / "clean").mkdir(parents=True, exist_ok=True)
    n = 0
    for part in map(Path, parts):
        index = json.loads((part / "index.json").read_text())
        for e in index["pairs"]:
            clean = _rgb((part / f"{e['stem']}_clean.webp").read_bytes())
            layer = _rgb((part / f"{e['stem']}_layer.webp").read_bytes())
            rainy = ((clean.astype(np.int16) + layer) % 256).astype(np.uint8)
            if _digest(rainy) != e["rainy_sha"] or _digest(clean) != e["clean_sha"]:
                raise ValueError(f"pack part {part}: {e['name']} does not restore exactly")
            name = Path(e["name"]).with_suffix(".png").name
            Image.fromarray(rainy).save(out / "rainy" / name, compress_level=1)
            Image.fromarray(clean).save(out / "clean" / name, compress_level=1)
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m derain_core.pack", description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", help="DATA_DIR OUT_DIR to pack; with --unpack: the part folders")
    ap.add_argument("--unpack", action="store_true")
    ap.add_argument("--out", help="with --unpack: where rainy/ and clean/ go")
    ap.add_argument("--max-part-mib", type=float, default=12.0)
    ap.add_argument("--limit", type=int, help="pack only the first N pairs")
    args = ap.parse_args(argv)
    try:
        if args.unpack:
            if not args.out:
                raise ValueError("--unpack needs --out")
            print(f"unpacked {unpack(args.paths, args.out)} pairs into {args.out}")
        else:
            if len(args.paths) != 2:
                raise ValueError("give DATA_DIR OUT_DIR")
            parts = write_pack(args.paths[0], args.paths[1], args.max_part_mib, args.limit)
            for p in parts:
                mib = sum(f.stat().st_size for f in p.iterdir()) / 2 ** 20
                print(f"{p}: {len(list(p.glob('*_clean.webp')))} pairs, {mib:.1f} MiB")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
