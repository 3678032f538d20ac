"""Resolve requirements.txt as a Linux x86_64 Hugging Face Space would, without installing.

    python scripts/space_resolve.py [--python 3.12] [--report out.json]

Runs ``pip install --dry-run --report`` for the Space's platform and Python version (read from
the README front matter), ignoring this machine's pip configuration (its local wheel folder
holds a CPU-only torch). Prints the torch it would get and whether that build can use CUDA.
Needs network access to PyPI. Exit status 0 when torch resolves to a CUDA-capable build.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GLIBC_MINOR = 36  # Debian bookworm, the base of the Spaces Python images


def front_matter_python(readme: Path = ROOT / "README.md") -> str:
    """``python_version`` from the README's YAML front matter."""
    text = readme.read_text(encoding="utf-8")
    head = text.split("---")[1] if text.startswith("---") else ""
    match = re.search(r'^python_version:\s*"?([0-9.]+)"?', head, re.M)
    if not match:
        raise SystemExit("README front matter has no python_version")
    return match.group(1)


def resolve(python: str, requirements: Path = ROOT / "requirements.txt") -> dict:
    """The pip installation report for ``requirements`` on a Linux x86_64 Space with ``python``."""
    platforms = [f"manylinux_2_{m}_x86_64" for m in range(GLIBC_MINOR, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
               "--target", str(Path(tmp) / "target"), "--report", str(report), "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp"]
        for p in platforms:
            cmd += ["--platform", p]
        cmd += ["-r", str(requirements)]
        env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.pop("PIP_FIND_LINKS", None)
        env.pop("PIP_CONSTRAINT", None)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit("pip could not resolve requirements.txt:\n" + done.stderr[-2000:])
        return json.loads(report.read_text())


def summary(report: dict) -> dict:
    """Torch version, whether it is a CPU-only build, and the CUDA packages it brings."""
    installs = {i["metadata"]["name"].lower(): i for i in report["install"]}
    torch = installs.get("torch")
    if torch is None:
        raise SystemExit("torch is not in the resolution")
    version = torch["metadata"]["version"]
    cuda = sorted(n for n in installs if n.startswith(("nvidia-", "triton", "cuda-")))
    return {"torch": version, "torch_url": torch["download_info"]["url"], "cpu_only": "+cpu" in version,
            "cuda_packages": cuda, "n_packages": len(installs),
            "spaces": installs.get("spaces", {}).get("metadata", {}).get("version"),
            "gradio": installs.get("gradio", {}).get("metadata", {}).get("version")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=None, help="Python version (default: README front matter)")
    ap.add_argument("--report", help="also write the summary as JSON here")
    args = ap.parse_args()
    python = args.python or front_matter_python()
    info = summary(resolve(python))
    info["python"] = python
    print(f"Space (Linux x86_64, Python {python}): torch {info['torch']} "
          f"({'CPU only' if info['cpu_only'] else 'CUDA build'}), {len(info['cuda_packages'])} CUDA packages, "
          f"gradio {info['gradio']}, spaces {info['spaces']}, {info['n_packages']} packages in all")
    if args.report:
        Path(args.report).write_text(json.dumps(info, indent=2) + "\n")
    return 0 if not info["cpu_only"] and info["cuda_packages"] else 1


if __name__ == "__main__":
    sys.exit(main())
