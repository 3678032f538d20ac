"""Every ``DERAIN_*`` environment variable the studio reads, in one table: name, default, meaning.

Code reads a setting through :func:`get`, which parses and checks the value each time it is
called (module constants call it once, at import). A malformed value raises
:class:`SettingError`, one line that names the variable, what it takes and what it got;
``derain settings`` prints the table with the values in force.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["Setting", "SettingError", "SettingsExit", "SETTINGS", "get", "describe", "check"]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingError(ValueError):
    """A ``DERAIN_*`` variable with a value the studio cannot use."""


class SettingsExit(SystemExit):
    """Raised by :func:`check`: exit status 2, the one-line reason in ``message`` (already printed)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


@dataclass(frozen=True)
class Setting:
    """One environment variable.

    ``kind``: ``int`` (a whole number, at least ``minimum``), ``flag`` (1/0, true/false, yes/no,
    on/off), ``choice`` (one of ``choices``), ``text`` or ``path``. ``default`` None: unset means
    "decided elsewhere", as ``help`` says.
    """

    name: str
    kind: str
    default: Any
    help: str
    minimum: int | None = None
    choices: tuple[str, ...] = ()

    def parse(self, raw: str) -> Any:
        """``raw`` (the variable's text, stripped and not empty) as this setting's value."""
        if self.kind == "int":
            try:
                value = int(raw)
            except ValueError:
                value = None
            if value is None or (self.minimum is not None and value < self.minimum):
                at_least = f" of at least {self.minimum}" if self.minimum is not None else ""
                raise SettingError(f"{self.name} must be a whole number{at_least} ({self.help}); got {raw!r}")
            return value
        if self.kind == "flag":
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise SettingError(f"{self.name} must be 1 or 0 (true/false, yes/no, on/off); got {raw!r}")
        if self.kind == "choice":
            if raw.lower() not in self.choices:
                raise SettingError(f"{self.name} must be one of {', '.join(self.choices)}; got {raw!r}")
            return raw.lower()
        return raw


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    # what the apps process and show
    Setting("DERAIN_WORKING_MAX_SIDE", "int", 640, "longest side in px of the copy the apps derain unless the user "
            "asks for full resolution; lower it on a slower CPU (run time follows the pixel count)", minimum=16),
    Setting("DERAIN_DISPLAY_MAX_SIDE", "int", 1280, "longest side in px of the Gradio demo's on-screen copies",
            minimum=64),
    Setting("DERAIN_MAPS_MAX_SIDE", "int", 512, "maps of larger images come from a pass over a copy this size (px)",
            minimum=16),
    Setting("DERAIN_TILE_THRESHOLD", "int", 1024 * 1024, "images with more pixels than this run in tiles", minimum=1),
    # memory
    Setting("DERAIN_MODEL_CACHE", "int", 10, "built networks kept in memory (least recently used dropped first)",
            minimum=1),
    Setting("DERAIN_MAPS_CACHE_MB", "int", 512, "MB of intermediate maps kept for all sessions together", minimum=0),
    Setting("DERAIN_SPILL_MB", "int", 1024, "MB of a tiled run's whole-image state kept in memory on the CPU; "
            "above it the state goes to temporary files", minimum=0),
    Setting("DERAIN_SPILL_DIR", "path", None, "folder for those files (unset: the system's temporary folder)"),
    Setting("DERAIN_MALLOC_TUNING", "flag", True, "glibc heap tuning (mallopt, and huge pages for training) on Linux"),
    # where things are
    Setting("DERAIN_WEIGHTS_DIR", "path", None, "folder of the weights files (unset: the repository's weights/)"),
    Setting("DERAIN_EXAMPLES_INDEX", "path", None, "examples index JSON (unset: assets/examples/index.json)"),
    Setting("DERAIN_RESULTS_DIR", "path", None, "folder of committed results (unset: the repository's results/)"),
    # how it runs
    Setting("DERAIN_DEVICE", "text", None, "force a torch device, e.g. cpu or cuda:1 (unset: CUDA, MPS, else CPU)"),
    Setting("DERAIN_PRECISION", "choice", None, "force a precision for every model (unset: what each card allows "
            "on the device)", choices=("fp32", "bf16", "fp16")),
    Setting("DERAIN_THREADS", "int", None, "CPU threads for inference in the apps (unset: torch's default)",
            minimum=1),
    Setting("DERAIN_CALIBRATE", "flag", True, "time one cheap model at start-up to scale the run-time estimates"),
    Setting("DERAIN_DEBUG", "flag", False, "show tracebacks instead of one-line errors"),
)}


def get(name: str) -> Any:
    """The value in force for setting ``name``: its environment variable parsed, or its default
    when the variable is unset or empty. Raises :class:`SettingError` for a malformed value."""
    setting = SETTINGS[name]
    raw = os.environ.get(name, "").strip()
    return setting.parse(raw) if raw else setting.default


def describe() -> list[dict[str, Any]]:
    """Every setting with its value in force (or the error its value gives), for ``derain settings``."""
    rows = []
    for s in SETTINGS.values():
        try:
            value, error = get(s.name), ""
        except SettingError as exc:
            value, error = None, str(exc)
        rows.append({"name": s.name, "value": value, "default": s.default, "set": bool(os.environ.get(s.name)),
                     "help": s.help, "error": error})
    return rows


def check() -> None:
    """Exit (status 2) with one line if any ``DERAIN_*`` variable is malformed (run when ``derain_core`` is
    imported, before any module reads its settings into constants)."""
    for s in SETTINGS.values():
        try:
            get(s.name)
        except SettingError as exc:
            print(f"derain: {exc}", file=sys.stderr)
            raise SettingsExit(str(exc)) from None  # status 2, as the CLI's other errors a user can cause
