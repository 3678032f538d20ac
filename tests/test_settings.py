"""DERAIN_* settings: one table, checked values, one-line errors."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from derain_core import engine, settings
from derain_core.cli import main
from derain_core.registry import get_card

ROOT = Path(__file__).resolve().parent.parent


def test_every_variable_read_is_in_the_table_and_read_through_it():
    """No module reads a DERAIN_* variable behind the table's back, and every name the code uses
    is declared (a typo in a name would otherwise be a KeyError only when that line runs)."""
    direct, used = [], set()
    for path in sorted([*ROOT.glob("derain_core/**/*.py"), *ROOT.glob("app/**/*.py")]):
        text = path.read_text()
        if path.name != "settings.py" and re.search(r"environ(\.get)?[(\[]\s*[\"']DERAIN_", text):
            direct.append(path.name)
        used.update(re.findall(r"settings\.get\(\"(DERAIN_\w+)\"\)", text))
    assert not direct, f"read DERAIN_* directly: {direct}"
    assert used and used <= set(settings.SETTINGS), used - set(settings.SETTINGS)


def test_defaults_when_unset_or_empty(monkeypatch):
    monkeypatch.delenv("DERAIN_WORKING_MAX_SIDE", raising=False)
    assert settings.get("DERAIN_WORKING_MAX_SIDE") == 640
    monkeypatch.setenv("DERAIN_WORKING_MAX_SIDE", "  ")
    assert settings.get("DERAIN_WORKING_MAX_SIDE") == 640
    monkeypatch.setenv("DERAIN_WORKING_MAX_SIDE", "512")
    assert settings.get("DERAIN_WORKING_MAX_SIDE") == 512


@pytest.mark.parametrize("name, raw, expected", [
    ("DERAIN_CALIBRATE", "0", False), ("DERAIN_CALIBRATE", "Yes", True), ("DERAIN_DEBUG", "off", False),
    ("DERAIN_PRECISION", "BF16", "bf16"), ("DERAIN_SPILL_MB", "0", 0), ("DERAIN_SPILL_DIR", "/tmp/x", "/tmp/x"),
])
def test_values_parse(monkeypatch, name, raw, expected):
    monkeypatch.setenv(name, raw)
    assert settings.get(name) == expected


@pytest.mark.parametrize("name, raw, says", [
    ("DERAIN_WORKING_MAX_SIDE", "big", "whole number of at least 16"),
    ("DERAIN_WORKING_MAX_SIDE", "8", "whole number of at least 16"),
    ("DERAIN_MODEL_CACHE", "2.5", "whole number of at least 1"),
    ("DERAIN_CALIBRATE", "maybe", "1 or 0"),
    ("DERAIN_PRECISION", "fp64", "one of fp32, bf16, fp16"),
])
def test_malformed_values_are_one_line_errors(monkeypatch, name, raw, says):
    monkeypatch.setenv(name, raw)
    with pytest.raises(settings.SettingError) as err:
        settings.get(name)
    msg = str(err.value)
    assert msg.startswith(name) and says in msg and repr(raw) in msg and "\n" not in msg, msg


def test_engine_refuses_a_forced_precision_or_device_it_cannot_use(monkeypatch):
    """Before: DERAIN_PRECISION=fp64 ran in fp16 (anything but bf16 was taken as fp16), and a
    bad DERAIN_DEVICE was torch's own message."""
    monkeypatch.setenv("DERAIN_PRECISION", "fp64")
    with pytest.raises(settings.SettingError, match="DERAIN_PRECISION"):
        engine.choose_precision(get_card("dsmnet"), engine.resolve_device("cpu"))
    monkeypatch.setenv("DERAIN_PRECISION", "fp32")
    assert engine.choose_precision(get_card("dsmnet"), engine.resolve_device("cpu")) == "fp32"
    monkeypatch.setenv("DERAIN_DEVICE", "gpu0")
    with pytest.raises(settings.SettingError, match="DERAIN_DEVICE is not a torch device"):
        engine.default_device()


def test_import_with_a_malformed_variable_exits_with_one_line():
    env = {"PATH": "/usr/bin:/bin", "DERAIN_TILE_THRESHOLD": "a lot"}
    out = subprocess.run([sys.executable, "-c", "import derain_core"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "derain: DERAIN_TILE_THRESHOLD must be a whole number of at least 1 "
        f"({settings.SETTINGS['DERAIN_TILE_THRESHOLD'].help}); got 'a lot'"], out.stderr


def test_derain_settings_lists_every_variable(monkeypatch, capsys):
    monkeypatch.setenv("DERAIN_MAPS_CACHE_MB", "256")
    monkeypatch.delenv("DERAIN_PRECISION", raising=False)
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    for name in settings.SETTINGS:
        assert name in out, name
    assert re.search(r"DERAIN_MAPS_CACHE_MB\s+256\s", out) and re.search(r"DERAIN_WORKING_MAX_SIDE\s+\d+ \(default\)", out)
    monkeypatch.setenv("DERAIN_PRECISION", "double")
    assert main(["settings"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("derain: error: DERAIN_PRECISION must be one of"), err


def test_dashboard_with_a_malformed_variable_says_so_on_the_page(monkeypatch):
    """The import check exits; the dashboard shows its one line instead of a blank page."""
    from streamlit.testing.v1 import AppTest

    def ours(name: str) -> bool:
        return name in ("derain_core", "dashboard_ui") or name.startswith("derain_core.")

    monkeypatch.setenv("DERAIN_MAPS_CACHE_MB", "lots")
    saved = {k: v for k, v in sys.modules.items() if ours(k)}
    for k in saved:
        del sys.modules[k]  # imported afresh, as a new server would
    try:
        at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=60).run()
    finally:  # the modules of the rest of the session back, none of the half-imported ones
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
    assert [e.value for e in at.error] == [
        "The dashboard cannot start: DERAIN_MAPS_CACHE_MB must be a whole number of at least 0 "
        f"({settings.SETTINGS['DERAIN_MAPS_CACHE_MB'].help}); got 'lots'"]
