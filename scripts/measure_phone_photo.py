"""Measure the Gradio app on a phone-size photo (issue 21): time to the first and the last result
at the default working size, the estimate the app shows against the measured time, peak
resident memory of the server during a full-resolution run of the five models, resident memory
after start-up against after the runs, and how soon a run starts after a cancelled one.

    .venv/bin/python scripts/measure_phone_photo.py                # 4032x3024, five models (~25 min on 2 cores)
    .venv/bin/python scripts/measure_phone_photo.py --skip-full    # the working-size part only
    .venv/bin/python scripts/measure_phone_photo.py --quick        # small photo, one model (a test runs this)

The app runs in a subprocess (``python app/gradio_app.py``) and is driven over HTTP with
gradio_client exactly as a visitor's browser drives it (the /derain, /inspect, /estimate and
/cancel endpoints). The photo is a bundled example upscaled to 4032x3024 and saved as a JPEG.
Memory is the server process's: VmRSS polled every 0.1 s and VmHWM from /proc/PID/status
(reset with /proc/PID/clear_refs before the full-resolution run). ``--json`` writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VARIANT = "default (each model's own)"  # the app's first weights choice
FIVE = ["msamnet", "dsmnet", "mfan", "rranet", "jdnet"]
TARGETS = {"first_s": 10.0, "last_s": 40.0, "estimate_factor": 1.5, "full_peak_gb": 4.0, "settled_over_startup_gb": 1.5}


# --------------------------------------------------------------------------------------
# The server process and its memory
# --------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def hwm_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM") / 1024


def reset_hwm(pid: int) -> bool:
    """Reset the peak resident size (Linux: ``5`` written to clear_refs); False when not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssPoller:
    """The largest VmRSS of ``pid`` seen while running (sampled every ``every`` seconds), and
    every sample as ``(time.perf_counter(), MB)``."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every, self.peak = pid, every, 0.0
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                mb = rss_mb(self.pid)
            except (OSError, KeyError):
                return
            self.peak = max(self.peak, mb)
            self.samples.append((time.perf_counter(), mb))
            self._stop.wait(self.every)

    def peaks_between(self, marks: list[float]) -> list[float]:
        """The largest sample in each interval ``[marks[i], marks[i + 1])`` (0 where none)."""
        return [max((mb for t, mb in self.samples if a <= t < b), default=0.0) for a, b in zip(marks, marks[1:])]

    def __enter__(self) -> "RssPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def start_server(port: int, env: dict, log_path: Path, wait_calibration: bool, timeout: float = 300) -> subprocess.Popen:
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app" / "gradio_app.py"), "--host", "127.0.0.1",
                             "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        raise RuntimeError(f"the app did not answer within {timeout:.0f} s; see {log_path}")
    while wait_calibration and time.time() < deadline:  # the estimate is calibrated once at start-up
        text = log_path.read_text(errors="replace")
        if "calibrated " in text or "calibration on" in text:
            break
        time.sleep(0.5)
    return proc


# --------------------------------------------------------------------------------------
# Driving the app
# --------------------------------------------------------------------------------------
def make_photo(out: Path, size: tuple[int, int], source: Path | None = None) -> Path:
    """A JPEG of ``size`` made from a bundled rainy example, upscaled (bicubic) like a phone photo."""
    source = source or sorted((ROOT / "assets" / "examples").glob("*_rainy.png"))[0]
    with Image.open(source) as im:
        im.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(out, quality=92)
    return out


def parse_seconds(text: str) -> float | None:
    """Seconds in an estimate text (``"about 3 min 10 s for ..."``, ``"about 1 h 5 min ..."``)."""
    m = re.search(r"about ((?:\d+ (?:h|min|s) ?)+)", text)
    if not m:
        return None
    unit = {"h": 3600, "min": 60, "s": 1}
    return float(sum(int(n) * unit[u] for n, u in re.findall(r"(\d+) (h|min|s)", m.group(1))))


def _page(values) -> dict:
    """The parts of a /derain page this script reads: the status text and the number of models in
    the metrics table (its first row, the rainy input's own, is not a result)."""
    table = next((v for v in values if isinstance(v, dict) and "headers" in v and "data" in v), None)
    rows = [r for r in table["data"] if r and r[0] != "rainy input"] if table else []
    return {"status": values[0], "rows": len(rows)}


def timed_run(client, photo: Path, models: list[str], full_res: bool) -> dict:
    """Submit one /derain run and time every page: the first with a result, and the last."""
    from gradio_client import handle_file

    estimate = client.predict(handle_file(str(photo)), models, full_res, api_name="/estimate")
    t0 = time.perf_counter()
    job = client.submit(handle_file(str(photo)), None, models, DEFAULT_VARIANT, full_res, api_name="/derain")
    first = last = None
    page = {"status": "", "rows": 0}
    marks = [t0]  # when the run started, then when each new result arrived (perf_counter)
    for values in job:
        page = _page(values)
        last = time.perf_counter() - t0
        if first is None and page["rows"]:
            first = last
        if page["rows"] >= len(marks):
            marks.append(t0 + last)
    job.result()  # raises when the run failed
    measured_estimate = parse_seconds(estimate)
    return {"full_res": full_res, "models": models, "first_s": first, "last_s": last, "results": page["rows"],
            "status": page["status"], "estimate_text": estimate, "estimate_s": measured_estimate, "marks": marks,
            "estimate_factor": (max(last, measured_estimate) / min(last, measured_estimate)
                                if measured_estimate and last else None)}


def inspect_all(client, models: list[str]) -> None:
    for m in models:
        client.predict(m, None, False, api_name="/inspect")


def cancel_check(client, photo: Path, models: list[str], wait_tiles: float = 60) -> dict:
    """Start a full-resolution run, cancel it once it is tiling, then time a working-size run of
    one model: a freed worker gives it the CPU at once."""
    from gradio_client import handle_file

    job = client.submit(handle_file(str(photo)), None, models, DEFAULT_VARIANT, True, api_name="/derain")
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < wait_tiles:  # wait for the first tile of the first model
        st = job.status()
        desc = " ".join(str(getattr(p, "desc", "") or "") for p in (getattr(st, "progress_data", None) or []))
        if "tile" in desc:
            break
        time.sleep(0.2)
    tiling_seen = time.perf_counter() - t0
    client.predict(api_name="/cancel")
    job.cancel()
    after = timed_run(client, photo, models[:1], False)
    return {"cancelled_after_s": tiling_seen, "tiling_seen": tiling_seen < wait_tiles,
            "next_first_s": after["first_s"], "next_last_s": after["last_s"]}


# --------------------------------------------------------------------------------------
def _machine() -> dict:
    """Where the numbers come from: the CPU (with its matrix instructions), its cores, the commit."""
    import torch

    from derain_core.train import device_description

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"cpu": device_description(torch.device("cpu")), "cpu_count": os.cpu_count(),
            "commit": commit.stdout.strip() or None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="a 320x240 photo, one model, a 160-px working size (seconds; for the test)")
    p.add_argument("--models", nargs="*", help="model ids (default: the five; --quick: dsmnet)")
    p.add_argument("--size", default=None, help="photo size WxH (default 4032x3024; --quick 320x240)")
    p.add_argument("--skip-full", action="store_true", help="skip the full-resolution run (and the cancel check)")
    p.add_argument("--no-cancel-check", action="store_true", help="skip the cancel check")
    p.add_argument("--threads", default=None, help="DERAIN_THREADS for the server (default: torch's own)")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the photo and the server log (kept anyway on failure)")
    args = p.parse_args(argv)

    models = args.models or (["dsmnet"] if args.quick else FIVE)
    w, h = (int(v) for v in (args.size or ("320x240" if args.quick else "4032x3024")).lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="derain_measure_"))
    photo = make_photo(tmp / f"phone_{w}x{h}.jpg", (w, h))
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if args.threads:
        env["DERAIN_THREADS"] = str(args.threads)
    if args.quick:
        env.update(DERAIN_WORKING_MAX_SIDE="160", DERAIN_CALIBRATE="0")
    port, log_path = _free_port(), tmp / "server.log"
    print(f"photo: {w}x{h} JPEG from a bundled example ({photo}); server log {log_path}", flush=True)

    from gradio_client import Client

    t_start = time.perf_counter()
    proc = start_server(port, env, log_path, wait_calibration=not args.quick)
    out: dict = {"quick": args.quick, "photo": [w, h], "models": models, **_machine()}
    ok = False
    try:
        time.sleep(1.0)
        out["memory"] = {"startup_rss_mb": rss_mb(proc.pid)}
        out["startup_s"] = time.perf_counter() - t_start
        print(f"server up in {out['startup_s']:.1f} s, resident {out['memory']['startup_rss_mb']:.0f} MB", flush=True)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)

        work = timed_run(client, photo, models, False)
        work.pop("marks")
        out["working"] = work
        print(f"working size: first result {work['first_s']:.1f} s, last ({work['results']} models) "
              f"{work['last_s']:.1f} s; shown '{work['estimate_text']}' vs measured {work['last_s']:.1f} s",
              flush=True)
        inspect_all(client, models)
        again = timed_run(client, photo, models, False)
        again.pop("marks")
        out["working_again"] = again
        print(f"working size again (models loaded): first {again['first_s']:.1f} s, last {again['last_s']:.1f} s",
              flush=True)
        out["memory"]["after_working_rss_mb"] = rss_mb(proc.pid)

        if not args.skip_full:
            reset = reset_hwm(proc.pid)
            with RssPoller(proc.pid) as poll:
                full = timed_run(client, photo, models, True)
            peak = max(poll.peak, hwm_mb(proc.pid) if reset else 0.0)
            out["full"] = full
            out["memory"]["full_peak_rss_mb"] = peak
            # the model whose turn it was: the peak between the previous result and its own
            out["memory"]["full_peak_rss_mb_per_model"] = dict(zip(models, poll.peaks_between(full.pop("marks"))))
            print(f"full resolution: {full['results']} models in {full['last_s']:.1f} s (first {full['first_s']:.1f} s); "
                  f"shown '{full['estimate_text']}'; peak resident memory {peak:.0f} MB "
                  f"({'VmHWM and polling' if reset else 'polling only'}); polled peak per model's turn: "
                  + ", ".join(f"{k} {v:.0f} MB" for k, v in out["memory"]["full_peak_rss_mb_per_model"].items()),
                  flush=True)
            if not args.quick and not args.no_cancel_check:
                out["cancel"] = cancel_check(client, photo, models)
                c = out["cancel"]
                print(f"cancel: cancelled {c['cancelled_after_s']:.1f} s into a full-resolution run; the next "
                      f"one-model working-size run's result after {c['next_first_s']:.1f} s (the same model "
                      f"took {again['first_s']:.1f} s above when the CPU was free)", flush=True)
        time.sleep(3.0)
        out["memory"]["settled_rss_mb"] = rss_mb(proc.pid)
        m = out["memory"]
        print(f"resident memory: after start-up {m['startup_rss_mb']:.0f} MB, after the runs {m['settled_rss_mb']:.0f} MB "
              f"({m['settled_rss_mb'] - m['startup_rss_mb']:+.0f} MB)", flush=True)
        ok = True
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif not ok:
            print(f"failed; the server log is {log_path}", file=sys.stderr)

    out["targets"] = _verdicts(out)
    for name, (value, target, ok) in out["targets"].items():
        print(f"target {name}: {value} (target {target}) {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _verdicts(out: dict) -> dict:
    """Each issue-21 target with its measured value (the quick mode's are not the real ones)."""
    v: dict = {}
    work, m = out["working"], out["memory"]
    v["first result at the working size"] = (f"{work['first_s']:.1f} s", f"<= {TARGETS['first_s']:.0f} s",
                                             work["first_s"] <= TARGETS["first_s"])
    v["last result at the working size"] = (f"{work['last_s']:.1f} s", f"<= {TARGETS['last_s']:.0f} s",
                                            work["last_s"] <= TARGETS["last_s"])
    for key in ("working", "full"):
        if key in out and out[key]["estimate_factor"]:
            f = out[key]["estimate_factor"]
            v[f"estimate vs measured ({key})"] = (f"x{f:.2f}", f"within x{TARGETS['estimate_factor']}",
                                                 f <= TARGETS["estimate_factor"])
    if "full_peak_rss_mb" in m:
        gb = m["full_peak_rss_mb"] / 1024
        v["peak resident memory, full resolution"] = (f"{gb:.2f} GB", f"<= {TARGETS['full_peak_gb']} GB",
                                                      gb <= TARGETS["full_peak_gb"])
    grown = (m["settled_rss_mb"] - m["startup_rss_mb"]) / 1024
    v["resident memory after runs over start-up"] = (f"{grown:+.2f} GB", f"<= {TARGETS['settled_over_startup_gb']} GB",
                                                     grown <= TARGETS["settled_over_startup_gb"])
    return v


if __name__ == "__main__":
    sys.exit(main())
