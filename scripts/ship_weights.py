"""Ship a trained run: copy its exported weights into weights/ and complete the JSON card.

    .venv/bin/python scripts/ship_weights.py runs/dsmnet_rain100l results/rain100l/dsmnet [--dataset rain100l_test]
    .venv/bin/python scripts/ship_weights.py runs/dsmnet_heavy_c1 runs/dsmnet_heavy_c1/eval   # heavy_test

Adds to the card: the test metrics measured by ``derain eval`` (read from the eval folder's
``eval_summary.json``, with the command that produced them), the validation curve from the
run's ``log.csv``, the chunk history (a run that started from the shipped weights adds one
chunk to theirs: ``chunks``, ``n_chunks``, ``total_steps_all_chunks``, ``total_wall_time_s``),
and merges the eval rows into ``results/<variant>/eval_summary.json`` and
``eval_per_image.csv`` (one file over all models, which the dashboard reads), with the rainy input's
own row when the eval ran with ``--input-baseline`` (scripts/finish_chunk.sh does).
The test set each variant is scored on is named in TEST_SETS.
Refuses to replace shipped weights that measured better unless ``--force``.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from derain_core.weights import WEIGHTS_DIR, accumulate_chunks, sha256_of, started_from  # noqa: E402


# variant -> (the test set's folder as `derain eval --data` gets it, the arguments of the script that makes
# it or None). `heavy` weights are scored on a synthetic storm set made from the Rain100L test split's
# clean images. scripts/finish_chunk.sh reads this table too.
TEST_SETS = {
    "rain100l": ("../shared/data/Rain100L_test", None),
    "heavy": ("runs/synthetic_storm_test", "scripts/make_synthetic_test.py --out runs/synthetic_storm_test "
              "--kind storm --count 50 --seed 1234"),
}


def read_curve(log_csv: Path) -> list[dict]:
    rows = []
    with open(log_csv) as f:
        for r in csv.DictReader(f):
            if r.get("val_psnr_y"):
                rows.append({"step": int(r["step"]), "elapsed_s": round(float(r["elapsed_s"]), 1),
                             "val_psnr_y": round(float(r["val_psnr_y"]), 3),
                             "val_ssim_y": round(float(r["val_ssim_y"]), 4) if r.get("val_ssim_y") else None,
                             **({"ema_val_psnr_y": round(float(r["ema_val_psnr_y"]), 3)}
                                if r.get("ema_val_psnr_y") else {})})
    return rows


def merge_rows(path: Path, new_rows: list[dict], model: str, variant: str) -> None:
    """Replace ``model``/``variant`` rows in a CSV or JSON list file by ``new_rows``."""
    if path.suffix == ".json":
        old = json.loads(path.read_text()) if path.is_file() else []
    else:
        old = list(csv.DictReader(open(path))) if path.is_file() else []
    kept = [r for r in old if not (r["model"] == model and r["variant"] == variant)]
    rows = kept + new_rows
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=2) + "\n")
    else:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)


def continued(card: dict, shipped: dict | None, shipped_file: Path) -> dict | None:
    """The card of what the run behind ``card`` continued, with its chunk history: the shipped
    weights', or an earlier chunk that was never shipped (its export folder inside its run folder,
    followed back the same way), or None for a run from scratch."""
    if started_from(card, shipped, shipped_file):
        return shipped
    if not card.get("init_from"):
        return None
    init = Path(card["init_from"])
    side, log = init.with_suffix(".json"), init.parent.parent / "log.csv"
    if not (init.is_file() and side.is_file() and log.is_file()):
        return None
    if card.get("init_sha256") and sha256_of(init) != card["init_sha256"]:
        return None
    earlier = json.loads(side.read_text())
    return accumulate_chunks(earlier, read_curve(log), continued(earlier, shipped, shipped_file))


def fine_tuned_from(card: dict, model: str, variant: str) -> dict | None:
    """Which other shipped variant of ``model`` the run started from (its weights file, by
    SHA-256, else by path), with that variant's training budget; None otherwise."""
    init = card.get("init_from")
    if not init:
        return None
    for other_card in sorted(WEIGHTS_DIR.glob(f"{model}_*.json")):
        other = json.loads(other_card.read_text())
        if other.get("variant") in (None, variant):
            continue
        f = WEIGHTS_DIR / other.get("file", other_card.with_suffix(".safetensors").name)
        same = (card.get("init_sha256") == sha256_of(f) if card.get("init_sha256") and f.is_file()
                else Path(init).name == f.name)
        if same:
            return {"variant": other["variant"], "steps": other.get("total_steps_all_chunks", other.get("steps")),
                    "wall_time_s": other.get("total_wall_time_s", other.get("wall_time_s")),
                    "sha256": other.get("sha256")}
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run folder (holds log.csv and export/)")
    ap.add_argument("eval", type=Path, help="folder written by `derain eval` for this run")
    ap.add_argument("--dataset", help="the card's metrics key (default: <variant>_test)")
    ap.add_argument("--data-arg", help="the test folder the eval ran on (default: the variant's in TEST_SETS)")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()

    export = args.run / "export"
    cards = sorted(export.glob("*.json"))
    if len(cards) != 1:
        sys.exit(f"expected one exported card in {export}, found {len(cards)}")
    card = json.loads(cards[0].read_text())
    model, variant = card["model_id"], card["variant"]
    dataset = args.dataset or f"{variant}_test"
    data_arg, make_cmd = (args.data_arg, None) if args.data_arg else TEST_SETS.get(variant, (None, None))
    if data_arg is None:
        sys.exit(f"no test set known for variant {variant!r}; pass --data-arg and --dataset")
    rows = json.loads((args.eval / "eval_summary.json").read_text())
    summary = [r for r in rows if r["model"] == model]
    if not summary:
        sys.exit(f"no eval row for {model} in {args.eval}")
    baseline = [r for r in rows if r["model"] == "rainy input"]
    metrics = {k: summary[0][k] for k in ("images", "psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")}
    metrics["command"] = ((f"python {make_cmd} && " if make_cmd else "")
                          + f"DERAIN_WEIGHTS_DIR={export} derain eval --data {data_arg} "
                          f"--models {model} --variant {variant}")

    shipped_card = WEIGHTS_DIR / f"{model}_{variant}.json"
    if shipped_card.is_file() and not args.force:
        old = json.loads(shipped_card.read_text()).get("metrics", {}).get(dataset, {})
        if old.get("psnr_y", -1) >= metrics["psnr_y"]:
            sys.exit(f"shipped {model}_{variant} measured {old['psnr_y']} dB >= {metrics['psnr_y']} dB; "
                     "not replacing (use --force)")

    src = export / card["file"]
    dst = WEIGHTS_DIR / card["file"]
    shipped = json.loads(shipped_card.read_text()) if shipped_card.is_file() else None
    previous = continued(card, shipped, dst)  # the chunks this one continues, if any
    base = (previous or {}).get("fine_tuned_from") or fine_tuned_from(card, model, variant)
    shutil.copyfile(src, dst)
    card = accumulate_chunks(card, read_curve(args.run / "log.csv"), previous)
    card["metrics"] = {**card.get("metrics", {}), dataset: metrics}
    if base:
        card["fine_tuned_from"] = base
    card["sha256"] = sha256_of(dst)
    shipped_card.write_text(json.dumps(card, indent=2) + "\n")

    results = ROOT / "results" / variant
    merge_rows(results / "eval_summary.json", summary, model, variant)
    if baseline:
        merge_rows(results / "eval_summary.json", baseline, "rainy input", baseline[0]["variant"])
    per_image = list(csv.DictReader(open(args.eval / "eval_per_image.csv")))
    merge_rows(results / "eval_per_image.csv", per_image, model, variant)
    print(f"shipped {dst.name}: {metrics['psnr_y']:.2f} dB Y / {metrics['ssim_y']:.4f} on {metrics['images']} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
