"""The model catalog decides what a model id loads (issue 22): it is its user's only, and a model whose file changed
since it was imported is refused on every path that loads it (the catalog's ``load``, ``resolveModel``, which the
four modules, ``meddl`` and ``meddl web`` use, and ``verify``).

Each test gets its own ``MEDDL_HOME`` and ``MEDDL_CACHE`` (Testing/conftest.py).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNet

from DLCommon import DLError, ModelCatalog, ModelSpec, saveCheckpoint, saveTorchScript
from DLCommon.catalog import resolveModel

ARGS = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8], "strides": [2], "num_res_units": 0}
SPEC = ModelSpec(name="tiny", task="segmentation", inputChannels=1, labelNames=["ball"])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    return saveCheckpoint(UNet(**ARGS).eval(), tmp_path / "source" / "tiny.pt", "UNet", ARGS, SPEC).with_suffix(".pt")


def test_catalog_and_cache_are_created_for_the_user_only(checkpoint, tmp_path):
    home, cache = Path(os.environ["MEDDL_HOME"]), Path(os.environ["MEDDL_CACHE"])
    assert not home.exists() and not cache.exists()
    entry = ModelCatalog().importFile(checkpoint, modelId="tiny")
    assert mode(home) == 0o700 and mode(home / "catalog.json") == 0o600
    cached = ModelCatalog().cachedPath("tiny")
    assert mode(cache) == 0o700 and mode(cached) == 0o600 and mode(cached.with_suffix(".json")) == 0o600
    assert entry.specSha256 and json.loads((home / "catalog.json").read_text())["models"][0]["specSha256"]
    assert not list(cached.parent.glob(".partial-*")) and not list(home.glob(".*.partial"))


@pytest.mark.parametrize("changed", ["weights", "spec", "spec removed"])
def test_a_checkpoint_changed_since_import_is_refused_on_every_load_path(changed, checkpoint):
    ModelCatalog().importFile(checkpoint, modelId="tiny")
    assert resolveModel("tiny").spec.labelNames == ["ball"]  # loads before the change
    cached = ModelCatalog().cachedPath("tiny")
    if changed == "weights":
        cached.write_bytes(cached.read_bytes() + b"\0")
    elif changed == "spec":  # e.g. other labels, or another network built from the same weights
        spec = json.loads(cached.with_suffix(".json").read_text())
        spec["spec"]["labelNames"] = ["tumour"]
        cached.with_suffix(".json").write_text(json.dumps(spec))
    else:
        cached.with_suffix(".json").unlink()
    expected = "is missing: it was imported with the model" if changed == "spec removed" else "has SHA-256"
    for load in (lambda: resolveModel("tiny"), lambda: ModelCatalog().load("tiny"),
                 lambda: ModelCatalog().verify("tiny"), lambda: ModelCatalog().fetch("tiny")):
        with pytest.raises(DLError, match=expected) as refused:
            load()
        assert "Fix:" in str(refused.value)


def test_a_torchscript_model_changed_since_import_is_refused(tmp_path):
    network = UNet(**ARGS).eval()
    path = saveTorchScript(network, tmp_path / "source" / "tiny.ts", SPEC, example=torch.zeros(1, 1, 8, 8, 8))
    ModelCatalog().importFile(path, modelId="scripted")
    resolveModel("scripted")
    cached = ModelCatalog().cachedPath("scripted")
    cached.write_bytes(cached.read_bytes()[:-1] + bytes([cached.read_bytes()[-1] ^ 1]))
    with pytest.raises(DLError, match="has SHA-256 .* expected"):
        resolveModel("scripted")


@pytest.mark.parametrize("fileName", ["../../outside.pt", "..", "a\\b.pt", "a\nb.pt"])
def test_a_catalog_entry_whose_file_name_is_a_path_is_refused(fileName):
    catalogPath = Path(os.environ["MEDDL_HOME"]) / "catalog.json"
    catalogPath.parent.mkdir(parents=True)
    catalogPath.write_text(json.dumps({"models": [{"id": "m", "url": "file:///x.pt", "sha256": "0" * 64,
                                                   "fileName": fileName}]}))
    with pytest.raises(DLError, match="which is not a plain file name"):
        ModelCatalog()
