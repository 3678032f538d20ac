"""Controllable rain synthesis: streak layers, compositing, haze, rain accumulation, drop blur.

The model, applied to a clean sRGB image ``J`` (``H x W x 3`` float in [0, 1]):

1. **Background degradations** (things between the scene and the near rain):

   * *drop blur* (``drop_blur``): a mild Gaussian blur of ``J`` blended in where the streak
     layer is locally dense. It approximates the loss of fine detail behind heavy rain:
     forward scattering by the many drops in the light path and the defocused, refracting
     near drops, neither of which a purely additive streak model reproduces. It is an
     empirical approximation, not a ray-traced drop model;
   * *haze* (``haze``): the atmospheric scattering model ``I = J t + A (1 - t)`` with
     ``t = exp(-haze * d)``, ``A = haze_color`` and ``d`` in [0, 1] a smooth depth proxy
     (the top of the frame is far, plus a low-frequency random field);
   * *rain accumulation* (``accumulation``): the veil of distant, unresolved streaks, the
     "rain accumulation" term of Yang et al. (CVPR 2017, the Rain100H paper): a
     depth-independent blend towards ``A`` whose strength follows a heavily blurred,
     dense streak field along the dominant direction (``V`` about ``accumulation``).

2. **Streaks and splashes** (near rain, not attenuated by the haze): every :class:`StreakLayer` is sparse
   random impulses (``density`` drops per pixel, random intensities) convolved with an
   anti-aliased line kernel of the layer's length and width at ``angle_deg`` (the motion
   blur of a falling drop during the exposure), then a Gaussian of sigma ``blur`` (defocus),
   scaled by ``brightness``. ``depth`` sizes the layer: length and width are divided by
   ``depth`` (1 = reference distance, 2 = twice as far so half as big, 0.5 = near the lens).
   All layers are summed in the Fourier domain (one inverse FFT). *Splashes* (``splash``) add
   the marks of drops hitting the ground: small flattened bright crowns (an elliptic ring
   around a dot), denser towards the bottom of the frame where the ground usually is. The sum,
   clipped to [0, 1], is the returned ``rain_layer`` ``R``.

3. **Compositing**: ``additive``: ``clip(B + R)``; ``screen``: ``1 - (1 - B)(1 - R)``,
   where ``B`` is the background after step 1.

Angles: ``angle_deg`` is measured from the vertical; a positive angle tilts the top of the
streak to the right (``/``), a negative one to the left (``\\``), as seen in the image.

Kinds (:data:`KINDS`): a preset name (``light``, ``heavy``, ``storm``: jitter around that
preset), ``mixed`` (a preset drawn at random), or ``wide``: the training distribution of the
``heavy`` weights for real photos, a weighted draw of the presets with much wider spreads of
density, length, width, blur, haze, accumulation, drop blur and compositing, and splashes
(:func:`random_params`).

Everything is deterministic for ``RainParams.seed``. Images are treated as sRGB values
(no linearisation), as the common synthetic benchmarks do.

Speed (one core, ``scripts/bench_synth.py``): a 481x321 "heavy" image takes a few tens of
milliseconds, fast enough to synthesize training pairs on the fly (:func:`synth_batch`).
"""
from __future__ import annotations

import copy
import math
import zlib
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

import numpy as np
from scipy import fft as sfft
from PIL import Image
from scipy import ndimage, signal

Composite = Literal["screen", "additive"]
COMPOSITES = ("screen", "additive")
DEFAULT_HAZE_COLOR = (0.82, 0.84, 0.87)

__all__ = ["StreakLayer", "RainParams", "PRESETS", "KINDS", "WIDE_PRESET_WEIGHTS", "check_kind", "synth_variant",
           "preset",
           "add_rain", "random_params", "synth_batch", "streak_kernel", "rain_energy", "random_rain",
           "describe_generator"]


@dataclass
class StreakLayer:
    """One family of rain streaks.

    ``angle_deg``: direction from vertical, positive = top leans right (``/``);
    ``length``, ``width``: streak size in pixels at ``depth`` 1; ``density``: drops per pixel;
    ``brightness``: peak intensity of a full-strength drop (0..1); ``blur``: Gaussian sigma in
    pixels (defocus); ``depth``: relative distance (> 0), size scales as ``1 / depth``.
    """

    angle_deg: float = 0.0
    length: float = 20.0
    width: float = 1.0
    density: float = 0.002
    brightness: float = 0.8
    blur: float = 0.5
    depth: float = 1.0

    def __post_init__(self) -> None:
        for name in ("length", "width", "depth"):
            if not getattr(self, name) > 0:
                raise ValueError(f"StreakLayer.{name} must be > 0, got {getattr(self, name)}")
        for name in ("density", "brightness", "blur"):
            if getattr(self, name) < 0:
                raise ValueError(f"StreakLayer.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def size_scale(self) -> float:
        """Size factor from depth: ``1 / depth``."""
        return 1.0 / self.depth


@dataclass
class RainParams:
    """All parameters of one synthetic rain rendering (JSON-able via :meth:`to_dict`)."""

    layers: list[StreakLayer] = field(default_factory=list)
    composite: Composite = "screen"
    haze: float = 0.0
    haze_color: tuple[float, float, float] = DEFAULT_HAZE_COLOR
    accumulation: float = 0.0
    drop_blur: float = 0.0
    splash: float = 0.0  # 0..1: splash marks of drops hitting the ground (0: none)
    seed: int = 0

    def __post_init__(self) -> None:
        self.layers = [StreakLayer(**l) if isinstance(l, dict) else l for l in self.layers]
        self.haze_color = tuple(float(c) for c in self.haze_color)  # type: ignore[assignment]
        self.seed = int(self.seed)
        if self.composite not in COMPOSITES:
            raise ValueError(f"composite must be one of {COMPOSITES}, got {self.composite!r}")
        if len(self.haze_color) != 3:
            raise ValueError(f"haze_color needs 3 values, got {self.haze_color}")
        if (self.haze < 0 or not 0 <= self.accumulation <= 1 or not 0 <= self.drop_blur <= 1
                or not 0 <= self.splash <= 1):
            raise ValueError("need haze >= 0 and accumulation, drop_blur and splash in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists, floats, ints, strings)."""
        d = asdict(self)
        d["haze_color"] = list(self.haze_color)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RainParams":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown RainParams keys: {sorted(unknown)}")
        layer_keys = {f.name for f in fields(StreakLayer)}
        layers = []
        for l in d.get("layers", []):
            bad = set(l) - layer_keys
            if bad:
                raise ValueError(f"unknown StreakLayer keys: {sorted(bad)}")
            layers.append(StreakLayer(**l))
        rest = {k: v for k, v in d.items() if k != "layers"}
        return cls(layers=layers, **rest)

    def dominant_angle(self) -> float:
        """Angle of the rain, weighted by each layer's density x brightness x length."""
        if not self.layers:
            return 0.0
        w = np.array([l.density * l.brightness * l.length * l.size_scale for l in self.layers])
        a = np.array([l.angle_deg for l in self.layers])
        return float((w * a).sum() / w.sum()) if w.sum() > 0 else float(a.mean())


# ----------------------------------------------------------------------------- presets

def _L(angle, length, width, density, brightness, blur, depth=1.0) -> StreakLayer:
    return StreakLayer(float(angle), float(length), float(width), float(density),
                       float(brightness), float(blur), float(depth))


PRESETS: dict[str, RainParams] = {
    # Rain100L-like: one streak direction, thin, sparse, some far fainter streaks.
    "light": RainParams(layers=[
        _L(-10, 26, 1.0, 0.0014, 0.60, 0.50, 1.0),
        _L(-9, 26, 1.0, 0.0025, 0.40, 0.60, 1.8),
    ], composite="screen"),
    # Rain100H-like: five streak directions in a band around the dominant angle,
    # long and bright near streaks, plus far fine rain and a weak accumulation veil.
    "heavy": RainParams(layers=[
        _L(-24, 44, 1.4, 0.0008, 0.60, 0.60, 0.9),
        _L(-16, 50, 1.3, 0.0009, 0.58, 0.55, 1.0),
        _L(-10, 56, 1.4, 0.0009, 0.62, 0.55, 1.0),
        _L(-4, 46, 1.2, 0.0009, 0.56, 0.60, 1.1),
        _L(4, 40, 1.2, 0.0007, 0.52, 0.65, 1.2),
        _L(-11, 40, 1.0, 0.0035, 0.30, 0.70, 2.2),
    ], composite="screen", accumulation=0.06, haze=0.1, drop_blur=0.2),
    # Heavy rain with haze, rain accumulation, drop blur and big defocused near streaks.
    "storm": RainParams(layers=[
        _L(-22, 40, 1.2, 0.0009, 0.55, 0.60, 1.0),
        _L(-15, 48, 1.2, 0.0010, 0.55, 0.60, 1.0),
        _L(-9, 52, 1.3, 0.0010, 0.58, 0.60, 1.0),
        _L(-3, 44, 1.2, 0.0009, 0.52, 0.65, 1.1),
        _L(3, 38, 1.1, 0.0007, 0.48, 0.70, 1.2),
        _L(-10, 40, 1.0, 0.0050, 0.28, 0.80, 2.5),
        _L(-12, 52, 3.0, 0.00008, 0.35, 1.8, 0.45),
    ], composite="screen", haze=0.7, accumulation=0.15, drop_blur=0.6),
}


# The ``wide`` kind: how often each preset is drawn (heavy rain dominates; some light rain so
# that the heavy weights still handle drizzle).
WIDE_PRESET_WEIGHTS: dict[str, float] = {"light": 0.15, "heavy": 0.45, "storm": 0.40}
KINDS: tuple[str, ...] = (*sorted(PRESETS), "mixed", "wide")


def check_kind(kind: str) -> str:
    """``kind`` if it names a rain kind (:data:`KINDS`), else a one-line ``ValueError``."""
    if kind not in KINDS:
        raise ValueError(f"unknown rain kind {kind!r}; choose from {', '.join(KINDS)}")
    return kind


def synth_variant(kind: str) -> str:
    """The weights variant a network trained on rain of ``kind`` is named after (``wide``: ``heavy``,
    the variant the apps prefer for uploaded photos; any other kind: its own name)."""
    return "heavy" if check_kind(kind) == "wide" else kind


def preset(name: str, seed: int = 0, **overrides: Any) -> RainParams:
    """A copy of ``PRESETS[name]`` with ``seed`` and overrides applied.

    Overrides are :class:`RainParams` fields (``composite``, ``haze``, ``layers`` ...) or:
    ``angle`` (new dominant angle: every layer is rotated by the same amount),
    ``density_scale``, ``brightness_scale``, ``length_scale`` (multiply every layer).
    """
    if name not in PRESETS:
        raise KeyError(f"unknown rain preset {name!r}; choose from {sorted(PRESETS)}")
    p = copy.deepcopy(PRESETS[name])
    p.seed = int(seed)
    angle = overrides.pop("angle", None)
    scales = {k: float(overrides.pop(f"{k}_scale", 1.0)) for k in ("density", "brightness", "length")}
    known = {f.name for f in fields(RainParams)}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"unknown preset overrides: {sorted(bad)}")
    if "layers" in overrides:
        p.layers = [StreakLayer(**l) if isinstance(l, dict) else copy.copy(l) for l in overrides.pop("layers")]
    if angle is not None:
        delta = float(angle) - p.dominant_angle()
        for l in p.layers:
            l.angle_deg += delta
    for l in p.layers:
        l.density *= scales["density"]
        l.brightness = min(1.0, l.brightness * scales["brightness"])
        l.length *= scales["length"]
    for k, v in overrides.items():
        setattr(p, k, v)
    p.__post_init__()
    return p


def random_params(rng: np.random.Generator | int | None = None, kind: str = "heavy") -> RainParams:
    """Random parameters around a preset, for training pairs.

    ``kind`` is a preset name, ``"mixed"`` (a preset drawn at random) or ``"wide"`` (see
    :func:`_widen`). The dominant angle is uniform in [-30, 30] degrees; each layer is jittered
    in angle (+-4 deg), length (x0.7-1.4), width (x0.85-1.2), density (x0.6-1.5) and
    brightness (x0.75-1.15); haze, accumulation and drop blur are scaled by x0.6-1.4; the seed
    is drawn from ``rng``.
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    check_kind(kind)
    if kind == "wide":
        names = sorted(WIDE_PRESET_WEIGHTS)
        weights = np.array([WIDE_PRESET_WEIGHTS[n] for n in names])
        return _widen(random_params(rng, str(rng.choice(names, p=weights / weights.sum()))), rng)
    if kind == "mixed":
        kind = str(rng.choice(sorted(PRESETS)))
    p = preset(kind, seed=int(rng.integers(0, 2**31 - 1)), angle=float(rng.uniform(-30, 30)))
    for l in p.layers:
        l.angle_deg += float(rng.uniform(-4, 4))
        l.length *= float(rng.uniform(0.7, 1.4))
        l.width *= float(rng.uniform(0.85, 1.2))
        l.density *= float(rng.uniform(0.6, 1.5))
        l.brightness = float(min(1.0, l.brightness * rng.uniform(0.75, 1.15)))
    p.haze *= float(rng.uniform(0.6, 1.4))
    p.accumulation = float(min(1.0, p.accumulation * rng.uniform(0.6, 1.4)))
    p.drop_blur = float(min(1.0, p.drop_blur * rng.uniform(0.6, 1.4)))
    return p


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _widen(p: RainParams, rng: np.random.Generator) -> RainParams:
    """Spread a jittered preset over the range of real rain (the ``wide`` kind), in place.

    One draw per image, applied to every layer: density x0.35-1.8 and length x0.6-1.7
    (log-uniform), width x0.8-2.0, defocus blur +0-1.0 px, brightness x0.8-1.2; haze
    U(0, 0.7) for half the images (else the preset's), accumulation U(0, 0.25), drop blur
    U(0, 0.7); splashes U(0.3, 1) on 40 % of the images; additive compositing on 20 % of the
    images with less than the preset's density (additive dense rain saturates to white).
    """
    density, length = _log_uniform(rng, 0.35, 1.8), _log_uniform(rng, 0.6, 1.7)
    width, blur, bright = float(rng.uniform(0.8, 2.0)), float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.8, 1.2))
    for l in p.layers:
        l.density *= density
        l.length *= length
        l.width *= width
        l.blur += blur
        l.brightness = min(1.0, l.brightness * bright)
    if rng.random() < 0.5:
        p.haze = float(rng.uniform(0.0, 0.7))
    p.accumulation = float(rng.uniform(0.0, 0.25))
    p.drop_blur = float(rng.uniform(0.0, 0.7))
    p.splash = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.4 else 0.0
    p.composite = "additive" if rng.random() < 0.2 and density < 1.0 else "screen"
    return p


# ----------------------------------------------------------------------------- rendering

def streak_kernel(length: float, width: float, angle_deg: float, taper: float = 0.3) -> np.ndarray:
    """Anti-aliased line kernel (odd square, peak 1) of a streak ``length x width`` pixels.

    Rows go down and columns right; a positive ``angle_deg`` tilts the top to the right.
    ``taper`` dims the two ends (a drop's motion-blur trace fades at its ends).
    """
    half = int(math.ceil(max(length, width) / 2.0 + 1.5))
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    th = math.radians(angle_deg)
    dx, dy = math.sin(th), -math.cos(th)          # unit vector towards the streak's top
    u = xx * dx + yy * dy                          # along the streak
    v = -xx * dy + yy * dx                         # across
    along = np.clip(length / 2.0 + 0.5 - np.abs(u), 0.0, 1.0)
    along *= 1.0 - taper * np.clip(2.0 * np.abs(u) / max(length, 1e-6), 0.0, 1.0) ** 2
    across = np.clip(width / 2.0 + 0.5 - np.abs(v), 0.0, 1.0)
    k = (along * across).astype(np.float32)
    return k / max(float(k.max()), 1e-12)


def _canvas_shape(h: int, w: int, kmax: int) -> tuple[int, int]:
    return (sfft.next_fast_len(max(h, kmax + 2), real=True),
            sfft.next_fast_len(max(w, kmax + 2), real=True))


def _kernel_fft(k: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """rfft2 of ``k`` placed with its centre at the origin of a periodic canvas."""
    c = np.zeros(shape, np.float32)
    kh, kw = k.shape
    c[:kh, :kw] = k
    c = np.roll(c, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return sfft.rfft2(c)


def _gauss_tf(shape: tuple[int, int], sigma: float) -> np.ndarray | float:
    """Fourier transfer function of a Gaussian blur on a periodic canvas."""
    if sigma <= 0:
        return 1.0
    fy = sfft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = sfft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    return np.exp(-2.0 * math.pi ** 2 * sigma ** 2 * (fx ** 2 + fy ** 2))


def _impulses(rng: np.random.Generator, shape: tuple[int, int], density: float,
              lo: float = 0.35) -> np.ndarray:
    """Sparse random impulses: Poisson(density * area) drops with intensities U(lo, 1)."""
    n = int(rng.poisson(density * shape[0] * shape[1]))
    idx = rng.integers(0, shape[0] * shape[1], n)
    val = rng.uniform(lo, 1.0, n)
    return np.bincount(idx, weights=val, minlength=shape[0] * shape[1]).astype(np.float32).reshape(shape)


def _streaks(rng: np.random.Generator, h: int, w: int, layers: list[StreakLayer]) -> np.ndarray:
    """Sum of all streak layers (``h x w`` float32, clipped to [0, 1])."""
    if not layers:
        return np.zeros((h, w), np.float32)
    kernels = [streak_kernel(l.length * l.size_scale, max(l.width * l.size_scale, 0.3), l.angle_deg)
               for l in layers]
    shape = _canvas_shape(h, w, max(k.shape[0] for k in kernels))
    acc = None
    for l, k in zip(layers, kernels):
        noise = _impulses(rng, shape, l.density)
        spec = sfft.rfft2(noise) * _kernel_fft(k, shape) * _gauss_tf(shape, l.blur) * np.float32(l.brightness)
        acc = spec if acc is None else acc + spec
    r = sfft.irfft2(acc, s=shape)[:h, :w]
    return np.clip(r, 0.0, 1.0).astype(np.float32)


def _splash_kernel(radius: float) -> np.ndarray:
    """A splash crown seen from the side (peak 1): a flattened elliptic ring around a dot."""
    half = int(math.ceil(radius)) + 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    rr = np.sqrt(xx ** 2 + (yy / 0.45) ** 2)  # ellipse: drops hit the ground at a grazing view
    ring = np.clip(1.0 - np.abs(rr - radius) / 0.9, 0.0, 1.0)
    dot = np.clip(1.0 - np.sqrt(xx ** 2 + yy ** 2) / 1.2, 0.0, 1.0)
    k = np.maximum(ring * 0.8, dot)
    return (k / max(float(k.max()), 1e-12)).astype(np.float32)


def _splashes(rng: np.random.Generator, h: int, w: int, amount: float) -> np.ndarray:
    """Splash marks ``h x w`` (float32, >= 0): small crowns of two sizes, Poisson-placed with a
    density growing towards the bottom of the frame (the ground); ``amount`` in [0, 1]."""
    ground = (np.linspace(0.0, 1.0, h, dtype=np.float32) ** 2)[:, None]
    out = np.zeros((h, w), np.float32)
    for radius, density in ((1.6, 0.0012), (3.0, 0.0004)):
        drops = _impulses(rng, (h, w), density * amount) * ground * np.float32(0.7)
        out += signal.fftconvolve(drops, _splash_kernel(radius), mode="same").astype(np.float32)
    return np.clip(out, 0.0, None)


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int = 5) -> np.ndarray:
    """Low-frequency random field in [0, 1] (bicubic upscaling of a coarse random grid)."""
    gw = max(2, int(round(cells * w / max(h, 1))))
    g = rng.random((cells, gw)).astype(np.float32)
    z = np.asarray(Image.fromarray(g).resize((w, h), Image.BICUBIC), np.float32)
    z = z - z.min()
    return z / max(float(z.max()), 1e-6)


def _depth_proxy(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth depth proxy in [0, 1]: far at the top of the frame, plus a low-frequency field."""
    vert = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    d = 0.7 * vert + 0.3 * _smooth_field(rng, h, w)
    d -= d.min()
    return d / max(float(d.max()), 1e-6)


def _accumulation_veil(rng: np.random.Generator, h: int, w: int, p: RainParams) -> np.ndarray:
    """Veil strength ``h x w`` (mean about ``p.accumulation``) of distant unresolved rain."""
    far = StreakLayer(p.dominant_angle(), 60.0, 2.0, 0.02, 1.0, 6.0, 1.0)
    f = _streaks(rng, h, w, [far])
    f = f / max(float(f.mean()), 1e-6)
    return np.clip(p.accumulation * (0.55 + 0.45 * f), 0.0, 0.95).astype(np.float32)


def _as_float_rgb(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"add_rain expects an H x W x 3 RGB array, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def add_rain(clean_rgb: np.ndarray, params: RainParams) -> tuple[np.ndarray, np.ndarray]:
    """Render rain over ``clean_rgb`` (``H x W x 3`` float in [0, 1], or uint8).

    Returns ``(rainy, rain_layer)``, both ``H x W x 3`` float32 in [0, 1]; ``rain_layer`` is
    the streak layer ``R`` (non-negative, grey) before compositing; haze, accumulation and drop
    blur are not in it (``rainy - clean`` is the full residual). Deterministic for
    ``params.seed``. With ``composite="additive"`` and no haze, accumulation or drop blur,
    ``rainy >= clean`` everywhere.
    """
    clean = _as_float_rgb(clean_rgb)
    h, w = clean.shape[:2]
    ss = np.random.SeedSequence(params.seed)
    r_streak, r_haze, r_acc, r_splash = (np.random.default_rng(s) for s in ss.spawn(4))
    r = _streaks(r_streak, h, w, params.layers)
    if params.splash > 0:
        r = np.clip(r + _splashes(r_splash, h, w, params.splash), 0.0, 1.0)

    bg = clean
    if params.drop_blur > 0 and params.layers:
        sigma = 0.6 + 1.6 * params.drop_blur
        blurred = ndimage.gaussian_filter(bg, (sigma, sigma, 0), mode="reflect")
        local = ndimage.gaussian_filter(r, 4.0, mode="reflect")
        m = np.clip(local / 0.12, 0.0, 1.0) * params.drop_blur
        bg = bg + (blurred - bg) * m[..., None]
    a = np.asarray(params.haze_color, np.float32)[None, None, :]
    if params.haze > 0:
        t = np.exp(-params.haze * _depth_proxy(r_haze, h, w))[..., None]
        bg = bg * t + a * (1.0 - t)
    if params.accumulation > 0:
        v = _accumulation_veil(r_acc, h, w, params)[..., None]
        bg = bg * (1.0 - v) + a * v

    r3 = np.repeat(r[..., None], 3, axis=2)
    if params.composite == "additive":
        rainy = np.clip(bg + r3, 0.0, 1.0)
    else:
        rainy = 1.0 - (1.0 - bg) * (1.0 - r3)
    return rainy.astype(np.float32), r3


def rain_energy(rain_layer: np.ndarray) -> float:
    """Mean squared intensity of a rain layer (a simple "how much rain" number)."""
    return float(np.mean(np.square(rain_layer, dtype=np.float64)))


def synth_batch(clean: "torch.Tensor", kind: str = "heavy",
                rng: np.random.Generator | int | None = None) -> "torch.Tensor":
    """Rainy versions of a batch ``B x 3 x H x W`` in [0, 1] (new random parameters per image).

    ``kind`` is a preset name or ``"mixed"``; ``rng`` a numpy Generator (or seed). Rendering
    runs on the CPU in numpy; the result has ``clean``'s dtype and device.
    """
    import torch

    if clean.ndim != 4 or clean.shape[1] != 3:
        raise ValueError(f"synth_batch expects B x 3 x H x W, got {tuple(clean.shape)}")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    x = clean.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([add_rain(img, random_params(rng, kind))[0] for img in x])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=clean.device, dtype=clean.dtype)


def random_rain(clean_rgb: np.ndarray, kind: str = "heavy", seed: int = 0,
                quantize: bool = True) -> tuple[np.ndarray, RainParams]:
    """Rainy version of one image with :func:`random_params` drawn from ``seed`` (deterministic).

    ``clean_rgb`` is ``H x W x 3`` uint8 or float in [0, 1]. Returns ``(rainy, params)``:
    ``rainy`` is float32 ``H x W x 3`` in [0, 1], rounded to 8-bit levels when ``quantize``
    (what a PNG of it holds, like the benchmark inputs); ``params`` reproduces it with
    :func:`add_rain`. Used for on-the-fly training pairs, the validation and test sets.
    """
    params = random_params(np.random.default_rng(int(seed)), kind)
    rainy = add_rain(clean_rgb, params)[0]
    if quantize:
        rainy = np.round(rainy * 255.0) / np.float32(255.0)
    return rainy.astype(np.float32), params


def describe_generator(kind: str = "heavy") -> str:
    """One line naming the generator and the preset behind ``kind`` (for weight cards)."""
    check_kind(kind)
    base = ("derain_core.synth.random_rain: add_rain with random_params(kind={!r}) per image "
            "(dominant angle U(-30, 30) deg, per-layer jitter of angle, length, width, density, "
            "brightness; haze/accumulation/drop blur x0.6-1.4), 8-bit quantised").format(kind)
    if kind == "mixed":
        return base + f"; preset drawn from {sorted(PRESETS)}"
    if kind == "wide":
        doc = " ".join((_widen.__doc__ or "").split("\n\n")[1].split())
        return base + f"; preset drawn with weights {WIDE_PRESET_WEIGHTS}, then widened: {doc}"
    p = PRESETS[kind]
    return (base + f"; preset {kind!r}: {len(p.layers)} streak layers, {p.composite} compositing, "
            f"haze {p.haze:g}, accumulation {p.accumulation:g}, drop blur {p.drop_blur:g}")


def stable_seed(text: str) -> int:
    """A seed derived from a string (CRC32), stable across runs and platforms."""
    return zlib.crc32(text.encode("utf-8")) & 0x7FFFFFFF
