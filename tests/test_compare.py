"""derain_core.compare, the one road both apps take from an upload to its pictures (CPU, tiny images);
and the registry as the only list of models: a sixth network is one new module."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import torch

from derain_core import compare, engine, io, registry
from derain_core.base import DerainNet, MapSpec

ROOT = Path(__file__).resolve().parent.parent


def _photo(w: int = 40, h: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    clean = np.clip(np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5.0)], -1), 0, 1).astype(np.float32)
    return clean


def test_prepare_checks_everything_once(tmp_path):
    rgb = _photo()
    up = compare.prepare(rgb, rgb, ["dsmnet"])
    assert up.models == ("dsmnet",) and up.variant is None and up.gt is not None
    assert up.input_metrics["psnr_rgb"] == float("inf")  # the input against itself
    assert compare.prepare(rgb).models == registry.model_ids()
    (tmp_path / "notes.png").write_text("not a picture")
    cases = [((None,), "No image", "Upload a rainy photo"),
             ((rgb, None, []), "No model", "at least one model"),
             ((rgb, None, ["nope"]), "Cannot run", "Unknown model"),
             ((rgb, None, ["dsmnet"], "no-such-variant"), "Cannot run", "Unknown weights variant"),
             ((str(tmp_path / "notes.png"),), "Unreadable image", "Could not read the photo"),
             ((rgb, rgb[:20]), "Size mismatch", "ground truth is 40×20 but the photo is 40×32")]
    for args, title, words in cases:
        with pytest.raises(compare.UploadError, match=words) as err:
            compare.prepare(*args)
        assert err.value.title == title


def test_upload_checked_the_moment_it_arrives(tmp_path):
    """The apps' check on arrival: the same sentences as a run, in plain words, before any run."""
    from PIL import Image

    (tmp_path / "notes.png").write_text("this is a text file, not a picture\n")
    Image.new("RGB", (40, 32)).save(tmp_path / "a.png")
    Image.new("RGB", (40, 20)).save(tmp_path / "small.png")
    bad = compare.upload_problem(str(tmp_path / "notes.png"))
    assert bad.startswith("Could not read the photo") and "notes.png" in bad and "not an image" in bad
    assert "Pillow" not in bad and "PIL" not in bad
    assert compare.upload_problem(str(tmp_path / "notes.png"), "ground truth").startswith(
        "Could not read the ground truth")
    assert compare.upload_problem(str(tmp_path / "a.png")) is None and compare.upload_problem(None) is None
    assert compare.size_problem(str(tmp_path / "a.png"), str(tmp_path / "small.png")) == (
        "The ground truth is 40×20 but the photo is 40×32; they must be the same size.")
    assert compare.size_problem(str(tmp_path / "a.png"), str(tmp_path / "a.png")) is None
    assert compare.size_problem(str(tmp_path / "a.png"), None) is None
    assert compare.size_problem(str(tmp_path / "notes.png"), str(tmp_path / "a.png")) is None


def test_run_streams_one_step_per_model_with_variant_fallback(tmp_path, monkeypatch):
    from derain_core import weights as wts

    card = registry.get_card("dsmnet")
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in card.test_config.items()}
    wts.save_weights(registry.create_model("dsmnet", **card.test_config), "dsmnet", "apptest", config,
                     {"note": "test fixture"}, directory=tmp_path)
    monkeypatch.setattr(wts, "WEIGHTS_DIR", tmp_path)  # dsmnet ships "apptest", msamnet nothing
    assert compare.variant_choices() == ["apptest", compare.UNTRAINED]
    up = compare.prepare(_photo(), None, ["dsmnet", "msamnet"], "apptest")
    steps = list(compare.run(up, metrics=False))
    assert [(s.model_id, s.result.variant, s.result.label) for s in steps] == [
        ("dsmnet", "apptest", "DSM-Net"), ("msamnet", compare.UNTRAINED, "MSAMNet (untrained)")]
    assert {c.id: c.label for c in compare.model_choices()}["msamnet"] == "MSAMNet (untrained)"


def test_a_failing_model_is_a_step_not_a_crash(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engine, "derain_one", broken)
    (step,) = compare.run(compare.prepare(_photo(), None, ["mfan"]))
    assert step.result is None and step.error == "MFAN failed: out of memory"


def test_crop_images_are_the_strips_crops_at_the_exact_factor():
    rgb = _photo(64, 48)
    up = compare.prepare(rgb, rgb, ["dsmnet"], compare.UNTRAINED)
    results = [s.result for s in compare.run(up, metrics=False)]
    crops = compare.crop_images(up, results, (20.0, 30.0), 8, 3)
    assert [label for label, _ in crops] == ["input", "ground truth", results[0].label]
    assert all(c.shape == (24, 24, 3) and c.dtype == np.uint8 for _, c in crops)
    first = crops[0][1]
    assert np.array_equal(first, np.repeat(np.repeat(first[::3, ::3], 3, 0), 3, 1))  # nearest neighbour


def test_maps_of_a_result_and_the_overlay_base(monkeypatch):
    img = io.load_image(_photo(64, 48))
    (step,) = compare.run(compare.prepare(img, None, ["dsmnet"], compare.UNTRAINED), metrics=False)
    maps = compare.maps_of(img, step.result)
    assert maps.scale == 1.0 and maps.note == "maps at full resolution" and maps.label == step.result.label
    assert maps.specs and all(isinstance(maps.maps[s.key], np.ndarray) and maps.maps[s.key].ndim == 3
                              for s in maps.specs)
    assert maps.base.shape == img.rgb.shape
    rain = next(s for s in maps.specs if s.key == "rain")
    assert rain.kind == "residual"
    assert step.result.output.dtype == np.uint16  # a float photo counts as 16-bit
    out = step.result.output / 65535.0
    inside = ((out > 0.01) & (out < 0.99)).transpose(2, 0, 1)  # the output is clipped to [0, 1]
    assert inside.mean() > 0.5
    removed = (img.rgb - out).transpose(2, 0, 1)
    assert np.allclose(maps.maps["rain"][inside], removed[inside], atol=0.02)  # bf16 on some CPUs
    monkeypatch.setattr(engine, "MAPS_MAX_SIDE", 32)  # a "large" photo: a preview pass
    small = compare.maps_of(img, step.result)
    assert small.scale == 0.5 and "preview" in small.note
    assert small.base.shape == (24, 32, 3) and small.maps["rain"].shape == (3, 24, 32)


# ------------------------------------------------------------------------- a sixth network
class HalfRain(DerainNet):
    """A one-layer network: predicts a rain layer and removes it."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, channels, 3, padding=1)

    def derain(self, x, rec):
        rain = 0.1 * torch.tanh(self.conv(x))
        rec("rain", rain)
        return x - rain

    def map_specs(self):
        return [MapSpec("rain", "residual", "rain layer", "R", 3)]


@pytest.fixture
def sixth(monkeypatch):
    """Registers a sixth network for one test (the registry is restored afterwards)."""
    registry.list_models()  # the five are loaded
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:  # the Gradio module builds its app at import: it must see the five only, or later tests inherit the sixth
        import app.gradio_app  # noqa: F401
    except ImportError:
        pass
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    card = registry.ModelCard(id="halfrain", name="HalfRain", paper="test", venue="test", year=2019,
                              predicts="rain layer", description="test network", predicts_note="output = input - R")
    registry.register(card)(HalfRain)
    return card


def test_a_sixth_network_appears_everywhere(sixth):
    assert registry.model_ids()[-1] == "halfrain"  # the oldest paper comes last
    assert "halfrain" in {c.id for c in compare.model_choices()}
    (step,) = compare.run(compare.prepare(_photo(), None, ["halfrain"]))
    assert step.result.label == "HalfRain (untrained)"
    assert compare.maps_of(io.load_image(_photo()), step.result).specs[0].kind == "residual"
    # the Gradio demo offers it (its choices come from the registry)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    pytest.importorskip("gradio")
    import app.gradio_app as ga

    assert ("HalfRain (untrained) · 2019", "halfrain") in ga._model_choices()
    models_box = next(b for b in ga.build().blocks.values() if getattr(b, "elem_id", None) == "models")
    assert ("HalfRain (untrained) · 2019", "halfrain") in models_box.choices


def test_a_sixth_network_in_the_dashboard(sixth, tmp_path, monkeypatch):
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    monkeypatch.setenv("DERAIN_EXAMPLES_INDEX", str(tmp_path / "none.json"))
    monkeypatch.setenv("DERAIN_RESULTS_DIR", str(tmp_path / "results"))
    at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    picker = at.multiselect(key="cmp_models")
    assert "halfrain" in picker.value and picker.format_func("halfrain") == "HalfRain (untrained)"


def test_card_fields_are_typed():
    cards = registry.list_models()
    assert all(c.predicts in ("rain layer", "clean image") for c in cards)
    assert registry.get_card("rranet").predicts_note.startswith("negative rain layer")
    with pytest.raises(ValueError, match="predicts"):
        registry.ModelCard(id="x", name="X", paper="", venue="", year=2000, predicts="rain map", description="")



def test_run_keeps_each_output_at_the_photos_bit_depth(tmp_path):
    # a result held after its metrics is what its PNG holds: uint8 for an 8-bit photo (a quarter
    # of the float output's memory), uint16 for a 16-bit one; the metrics come from the floats
    path = tmp_path / "photo.png"
    Image.fromarray((_photo(64, 48) * 255).round().astype(np.uint8)).save(path)
    img = io.load_image(str(path))
    (step,) = compare.run(compare.prepare(img, img, ["dsmnet"], compare.UNTRAINED))
    direct = engine.derain_one(img, "dsmnet", compare.UNTRAINED, img)
    assert step.result.output.dtype == np.uint8
    assert np.array_equal(step.result.output, io.quantize(direct.output, 8))
    assert step.result.metrics.keys() == direct.metrics.keys()
    assert np.allclose(list(step.result.metrics.values()), list(direct.metrics.values()), equal_nan=True)
    assert io.png_bytes(step.result.output) == io.png_bytes(direct.output)
    (step16,) = compare.run(compare.prepare(_photo(64, 48), None, ["dsmnet"], compare.UNTRAINED), metrics=False)
    assert step16.result.output.dtype == np.uint16
