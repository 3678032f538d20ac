"""The Hugging Face Space configuration: requirements, front matter, ZeroGPU durations.

ZeroGPU itself cannot run here, so a stand-in ``spaces`` package records what the app asks
of it: the GPU duration of each request, and a spent quota that must fall back to the CPU.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from derain_core import estimate
from derain_core.registry import model_ids

ROOT = Path(__file__).resolve().parent.parent
ZEROGPU_PYTHONS = ("3.10", "3.12")  # the Python versions ZeroGPU runs (ecosystem.md, section 3)


def _front_matter() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must start with the Space's YAML front matter"
    head = text.split("---\n")[1]
    return {k.strip(): v.strip().strip('"') for k, v in (line.split(":", 1) for line in head.splitlines() if ":" in line)}


def test_requirements_have_no_cpu_only_index():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    active = [line for line in lines if line and not line.startswith("#")]
    assert not [line for line in active if line.startswith(("--index-url", "--extra-index-url", "-i ", "--find-links"))]
    assert not [line for line in active if "download.pytorch.org" in line]
    torch_req = [line for line in active if re.match(r"torch\b", line)]
    assert torch_req and "+cpu" not in torch_req[0]


def test_local_setup_still_installs_the_cpu_build():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert '"torch==2.13.0"' in setup  # resolves to the local 2.13.0+cpu wheel here, before the package


def test_front_matter_targets_zerogpu():
    fm = _front_matter()
    assert fm["sdk"] == "gradio"
    assert fm["python_version"] in ZEROGPU_PYTHONS
    assert (ROOT / fm["app_file"]).is_file()


def test_gpu_duration_grows_with_size_and_models():
    five = list(model_ids())
    small = estimate.gpu_duration(five, 481, 321)
    big = estimate.gpu_duration(five, 4032, 3024)
    one = estimate.gpu_duration(five[:1], 4032, 3024)
    assert estimate.GPU_MIN_S <= small < big <= estimate.GPU_MAX_S
    assert one < big
    table = estimate.table_for("cuda")
    raw = table.seconds(five, 481, 321) * estimate.GPU_MARGIN
    assert small == max(estimate.GPU_MIN_S, min(estimate.GPU_MAX_S, int(-(-raw // 1))))


def test_cost_table_reproduces_the_benchmark(tmp_path):
    bench = {"rows": [{"model_id": "dsmnet", "size": "481x321", "device": "cpu", "fast_s": 0.6},
                      {"model_id": "dsmnet", "size": "1024x768", "device": "cpu", "fast_s": 4.8}]}
    (tmp_path / "bench_cpu.json").write_text(json.dumps(bench))
    table = estimate.table_for("cpu", results_dir=tmp_path)
    assert table.measured and "bench_cpu.json" in table.source
    assert table.seconds(["dsmnet"], 481, 321) == pytest.approx(0.6)
    assert table.seconds(["dsmnet"], 1024, 768) == pytest.approx(4.8)
    assert table.seconds(["dsmnet"], 240, 160) == pytest.approx(0.6 * 240 * 160 / (481 * 321))
    assert table.seconds(["dsmnet"], 2048, 1536) > 4 * 4.8 * 0.99  # extended with at least the mean rate
    assumed = estimate.table_for("cuda", results_dir=tmp_path)
    assert not assumed.measured and assumed.source.startswith("assumed")


def test_duration_of_an_unreadable_upload_is_the_minimum(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    assert estimate.gpu_duration_for_file(bad, ["dsmnet"]) == estimate.GPU_MIN_S
    assert estimate.gpu_duration_for_file(None, ["dsmnet"]) == estimate.GPU_MIN_S


# A stand-in for the `spaces` package: GPU(duration=...) records each request's duration in a
# JSON-lines file; while the file QUOTA exists it refuses the call the way ZeroGPU does.
STANDIN = '''
import json, os
from pathlib import Path

RECORD = Path(os.environ["STANDIN_RECORD"])


def GPU(fn=None, duration=60, **_kw):
    def wrap(f):
        def inner(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            quota = RECORD.with_name("QUOTA").exists()
            with RECORD.open("a") as fh:
                fh.write(json.dumps({"fn": f.__name__, "duration": seconds, "refused": quota}) + "\\n")
            if quota:
                import gradio as gr
                raise gr.Error(f"You have exceeded your GPU quota ({seconds}s requested vs. 3s left). Try again in 2:13:00")
            return f(*args, **kwargs)
        return inner
    return wrap(fn) if fn is not None else wrap
'''

DRIVER = '''
import json, sys
import numpy as np
from PIL import Image
sys.path.insert(0, sys.argv[1])
from gradio_client import Client, handle_file
import app.gradio_app as ga
from derain_core import estimate

tmp = sys.argv[2]
small = f"{tmp}/small.png"
Image.fromarray((np.arange(64 * 48 * 3) % 251).reshape(48, 64, 3).astype(np.uint8)).save(small)
five = [c.id for c in ga.compare.model_choices()]
out = {"durations": {}}
for w, h in ((481, 321), (4032, 3024)):
    path = f"{tmp}/photo_{w}x{h}.jpg"
    Image.new("RGB", (w, h), (90, 110, 130)).save(path, quality=90)
    out["durations"][f"{w}x{h}"] = {"five": ga.gpu_seconds(path, None, five),
                                    "one": ga.gpu_seconds(path, None, five[:1]),
                                    "expected_five": estimate.gpu_duration(five, w, h)}
ga.demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[3]), prevent_thread_lock=True, quiet=True)
client = Client(f"http://127.0.0.1:{sys.argv[3]}/", verbose=False)
default = "default (each model's own)"
fields = [f for f in ga.RunOutputs._fields if f not in ga.NOT_IN_API]


def derain():
    res = dict(zip(fields, client.predict(handle_file(small), None, ["dsmnet"], default, api_name="/derain")))
    rows = [r for r in res["table"]["data"] if r[0] != "rainy input"]
    return rows, str(res["details"])


rows, _ = derain()
out["gpu_run_rows"] = len(rows)
open(f"{tmp}/QUOTA", "w").close()
rows, details = derain()
out["quota_run_rows"] = len(rows)
out["quota_run_details"] = details
ga.demo.close()
print("RESULT " + json.dumps(out))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_app_serves_with_standin_spaces(tmp_path):
    """The app imports the stand-in `spaces`, asks it for a duration sized to each request, and
    falls back to the CPU when the visitor's quota is spent."""
    pkg = tmp_path / "standin" / "spaces"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(STANDIN))
    record = tmp_path / "calls.jsonl"
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "standin"), STANDIN_RECORD=str(record),
               SPACES_ZERO_GPU="true", DERAIN_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
    done = subprocess.run([sys.executable, "-c", DRIVER, str(ROOT), str(tmp_path), str(_free_port())],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.split("RESULT ", 1)[1])
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    print(json.dumps(out["durations"]), calls)

    run_calls = [c for c in calls if c["fn"] == "_run_on_gpu"]
    assert [c["refused"] for c in run_calls] == [False, True]
    assert run_calls[0]["duration"] == estimate.gpu_duration(["dsmnet"], 64, 48)
    assert out["gpu_run_rows"] == 1
    assert out["quota_run_rows"] == 1 and "cpu" in out["quota_run_details"]  # served on the CPU instead

    d = out["durations"]
    assert d["481x321"]["five"] == d["481x321"]["expected_five"]
    assert d["4032x3024"]["five"] == d["4032x3024"]["expected_five"]
    assert d["481x321"]["five"] < d["4032x3024"]["five"]
    assert d["4032x3024"]["one"] < d["4032x3024"]["five"]


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_requirements_resolve_to_a_cuda_torch_on_a_space(tmp_path):
    """pip's dry-run resolution for Linux x86_64 and the front matter's Python: a CUDA torch."""
    if not _pypi_reachable():
        pytest.skip("pypi.org is not reachable: the Space resolution needs the package index")
    report = tmp_path / "resolve.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "space_resolve.py"), "--report", str(report)],
                          capture_output=True, text=True, timeout=900)
    print(done.stdout, done.stderr[-2000:])
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    info = json.loads(report.read_text())
    assert not info["cpu_only"] and info["cuda_packages"]
    assert info["python"] == _front_matter()["python_version"]


@pytest.mark.parametrize("kind", ["gradio", "dashboard"])
def test_publish_stages_the_right_space(kind):
    """scripts/publish_space.sh (STAGE_ONLY=1: no account, no network) stages HEAD's files with
    the front matter of the Space kind: Gradio SDK as committed, or Docker on port 7860."""
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "publish_space.sh"), kind, "someone/derain"],
                          env=dict(os.environ, STAGE_ONLY="1"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    stage = Path(done.stdout.strip().splitlines()[-1])
    try:
        _check_stage(stage, kind)
    finally:
        shutil.rmtree(stage.parent, ignore_errors=True)


def _check_stage(stage: Path, kind: str) -> None:
    text = (stage / "README.md").read_text(encoding="utf-8")
    head = text.split("---\n")[1]
    fm = {k.strip(): v.strip().strip('"') for k, v in (line.split(":", 1) for line in head.splitlines() if ":" in line)}
    if kind == "gradio":  # as committed (the script publishes HEAD)
        committed = subprocess.run(["git", "-C", str(ROOT), "show", "HEAD:README.md"], capture_output=True,
                                   text=True, check=True).stdout
        assert text == committed and fm["sdk"] == "gradio"
    else:
        assert fm["sdk"] == "docker" and fm["app_port"] == "7860" and "app_file" not in fm
        assert (stage / "Dockerfile").is_file()
    assert sorted(p.name for p in (stage / "weights").glob("*.safetensors")) == \
        sorted(p.name for p in (ROOT / "weights").glob("*.safetensors"))
    assert (stage / "app" / "gradio_app.py").is_file()
    assert not (stage / ".venv").exists() and not (stage / "runs").exists()
