"""Model registry: one :class:`ModelCard` per network, timm/spandrel style.

A network module declares its card and registers its class::

    CARD = ModelCard(id="msamnet", ...)

    @register(CARD)
    class MSAMNet(DerainNet): ...

The engine reads everything it needs (size multiple, half-precision support, tiling,
weights files) from the card, so it needs no per-model special cases. The registry is the
only list of models: adding a network means adding a file to ``derain_core/models/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, get_args

import torch.nn as nn


@dataclass(frozen=True)
class PaperResult:
    """A number the paper reports (not measured by us)."""

    dataset: str
    psnr: float
    ssim: float
    colour_space: str  # "Y", "RGB" or "not stated"
    note: str = ""


# What a network's last layer estimates: the rain layer (the output is derived from it) or
# the clean image directly.
Predicts = Literal["rain layer", "clean image"]


@dataclass(frozen=True)
class ModelCard:
    """Everything the engine and the apps need to know about one network."""

    id: str
    name: str
    paper: str
    venue: str
    year: int
    predicts: Predicts
    description: str
    size_multiple: int = 1  # the network pads to this multiple internally
    # Reflection margin (pixels, a multiple of size_multiple) added on every side before the network
    # and cropped after, so that the image border is seen as interior content. For weights whose
    # response to the zero-padded frame edge is unstable (RRANet: a saturated 8-px band). Inference only.
    border_pad: int = 0
    min_size: int = 16  # smallest accepted side, in pixels
    supports_fp16: bool = False  # allowed on CUDA (checked by a test against fp32)
    supports_bf16: bool = False  # allowed on CUDA and on CPUs with native bf16
    # Speed hints for the fast path on CPU, measured per network (scripts/fast_path_variants.py):
    # channels_last helps convolution stacks but costs copies in slicing-heavy attention code, and
    # bf16 autocast only pays where convolutions dominate.
    cpu_channels_last: bool = True
    cpu_bf16: bool = True  # use bf16 on CPUs with native bf16 (only if supports_bf16)
    tiling: str = "supported"  # "supported" | "discouraged"
    tile_overlap: int = 32  # pixels of overlap the engine uses when tiling
    default_config: dict[str, Any] = field(default_factory=dict)
    test_config: dict[str, Any] = field(default_factory=dict)  # tiny config for fast tests
    paper_results: tuple[PaperResult, ...] = ()
    provenance: tuple[str, ...] = ()  # "paper: ...", "choice: ...", "official code: ..."
    license: str = "MIT (this re-implementation)"
    default_variant: str | None = None  # None: the engine's VARIANT_PREFERENCE decides
    predicts_note: str = ""  # how the output follows, e.g. "output = input - R"
    training: Any = None  # recipes.TrainingSpec: the paper's loss and recipe (derain train)

    def __post_init__(self) -> None:
        if self.predicts not in get_args(Predicts):
            raise ValueError(f"{self.id}: predicts must be one of {get_args(Predicts)}, got {self.predicts!r}")

    def with_(self, **changes: Any) -> "ModelCard":
        return replace(self, **changes)


_REGISTRY: dict[str, tuple[ModelCard, type[nn.Module]]] = {}


def register(card: ModelCard) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that adds a network and its card to the registry."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if card.id in _REGISTRY:
            raise ValueError(f"model id {card.id!r} registered twice")
        cls.card = card
        _REGISTRY[card.id] = (card, cls)
        return cls

    return wrap


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (imports every network module, which registers it)


def list_models() -> list[ModelCard]:
    """Every registered model card, newest paper first (ties by id)."""
    _ensure_loaded()
    return sorted((c for c, _ in _REGISTRY.values()), key=lambda c: (-c.year, c.id))


def model_ids() -> tuple[str, ...]:
    """The ids of every registered model, in :func:`list_models` order."""
    return tuple(c.id for c in list_models())


def __getattr__(name: str) -> Any:
    if name == "MODEL_IDS":  # the old hand-kept tuple, now read from the registry
        return model_ids()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_card(model_id: str) -> ModelCard:
    """The card of one model; raises ``KeyError`` with the known ids."""
    _ensure_loaded()
    if model_id not in _REGISTRY:
        raise KeyError(f"unknown model {model_id!r}; known: {', '.join(model_ids())}")
    return _REGISTRY[model_id][0]


def create_model(model_id: str, **config: Any) -> nn.Module:
    """Build a network with random initial weights.

    ``config`` overrides entries of the card's ``default_config``.
    """
    card = get_card(model_id)
    cls = _REGISTRY[model_id][1]
    unknown = set(config) - set(card.default_config)
    if unknown:
        raise TypeError(f"{model_id}: unknown config keys {sorted(unknown)}; "
                        f"known: {sorted(card.default_config)}")
    return cls(**{**card.default_config, **config})
