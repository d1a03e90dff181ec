"""The two learned generators have one shape: the same outer modules, the same checkpoint API and format rules."""

from __future__ import annotations

import importlib

import pytest

from tests.structure._tree import ROOT

GENERATORS = ("hypernet", "meta")
OUTER = ("config", "checkpoint", "data", "train", "generate")
CHECKPOINT_API = ("save_checkpoint", "load_checkpoint", "read_checkpoint_meta", "default_checkpoint_dir",
                  "FORMAT", "FORMAT_VERSION", "CONFIG_NAME", "WEIGHTS_NAME")


@pytest.mark.parametrize("package", GENERATORS)
def test_generator_has_the_five_outer_modules(package):
    missing = [m for m in OUTER if not (ROOT / package / f"{m}.py").is_file()]
    assert not missing, f"{package}/ lacks {missing}; both generators have {OUTER}"


def test_checkpoint_modules_share_names_files_and_default_locations():
    from loragen.bank import paths

    mods = {p: importlib.import_module(f"loragen.{p}.checkpoint") for p in GENERATORS}
    for package, mod in mods.items():
        assert [n for n in CHECKPOINT_API if not hasattr(mod, n)] == [], package
        assert mod.default_checkpoint_dir() == paths.checkpoint_dir(package)
    assert {(m.CONFIG_NAME, m.WEIGHTS_NAME) for m in mods.values()} == {("config.json", "model.safetensors")}
    assert len({m.FORMAT for m in mods.values()}) == 2  # each refuses the other's checkpoints


def test_layouts_serialise_with_one_naming():
    from loragen.hypernet.layout import AdapterLayout
    from loragen.meta.model import LoraLayout

    for layout in (AdapterLayout, LoraLayout):
        assert hasattr(layout, "to_dict") and hasattr(layout, "from_dict")
        assert not hasattr(layout, "to_json") and not hasattr(layout, "from_json")
