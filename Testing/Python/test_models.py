"""Model loading: TorchScript, MONAI bundle and checkpoint written by the test, checksums, pickled code."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import torch
from monai.networks.nets import UNet

from DLCommon import DLError, ModelCatalog, ModelSpec, loadModel, saveCheckpoint, saveTorchScript, sha256Of

UNET_ARGS = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2],
             "num_res_units": 1}
SPEC = ModelSpec(name="tiny", task="segmentation", inputChannels=1, spacing=[1.0, 1.0, 2.0],
                 normalization={"type": "zscore"}, roiSize=[16, 16, 16], labelNames=["a", "b"],
                 labelColors=[[1, 0, 0], [0, 1, 0]])


def assertSameNetwork(network, reference, probe):
    """Same network: the weights are copied, so bit for bit; the outputs are float32 sums whose order a kernel
    may change (threads, memory layout), so they are promised to float32 rounding only (rtol 1e-5, atol 1e-6)."""
    state = network.state_dict()
    assert state.keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(state[key], value), key
    with torch.no_grad():
        assert torch.allclose(network(probe), reference(probe), rtol=1e-5, atol=1e-6)


@pytest.fixture
def trainedUNet():
    """A UNet with a few real optimisation steps (not just its random initialisation)."""
    torch.manual_seed(0)
    network = UNet(**UNET_ARGS)
    optimizer = torch.optim.Adam(network.parameters(), 1e-2)
    x = torch.randn(2, 1, 16, 16, 16)
    target = (x > 0).long()[:, 0]
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(network(x), target).backward()
        optimizer.step()
    return network.eval()


@pytest.fixture
def probe():
    return torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1))


def test_checkpoint_round_trip(tmp_path, trainedUNet, probe):
    specPath = saveCheckpoint(trainedUNet, tmp_path / "model.pt", "UNet", UNET_ARGS, SPEC)
    for source in (specPath, tmp_path / "model.pt"):
        model = loadModel(source, sha256=sha256Of(tmp_path / "model.pt"))
        assert model.format == "checkpoint" and model.spec == SPEC
        assertSameNetwork(model.network, trainedUNet, probe)


def test_torchscript_round_trip_with_embedded_spec(tmp_path, trainedUNet, probe):
    path = saveTorchScript(trainedUNet, tmp_path / "model.ts", SPEC, example=probe)
    model = loadModel(path, sha256=sha256Of(path))
    assert model.format == "torchscript" and model.spec.labelNames == ["a", "b"]
    with torch.no_grad():
        assert torch.allclose(model.network(probe), trainedUNet(probe), atol=1e-6)


def writeBundle(root, network, weights="model.pt"):
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "metadata.json").write_text(json.dumps({
        "name": "tiny bundle", "version": "0.1.0", "description": "made by the test",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "num_channels": 1, "spatial_shape": [16, 16, 16]}},
            "outputs": {"pred": {"type": "image", "num_channels": 3,
                                 "channel_def": {"0": "background", "1": "a", "2": "b"}}}}}))
    (root / "configs" / "inference.json").write_text(json.dumps({
        "bundle_root": ".", "device": "$torch.device('cpu')",
        "network_def": {"_target_": "UNet", **UNET_ARGS}}))
    if weights == "model.pt":
        torch.save(network.state_dict(), root / "models" / "model.pt")
    return root


def test_bundle_directory_and_zip(tmp_path, trainedUNet, probe):
    bundle = writeBundle(tmp_path / "tiny_bundle", trainedUNet)
    model = loadModel(bundle, sha256=sha256Of(bundle))
    assert model.format == "bundle"
    assert model.spec.labelNames == ["a", "b"] and model.spec.inputChannels == 1
    assertSameNetwork(model.network, trainedUNet, probe)

    archive = shutil.make_archive(str(tmp_path / "tiny_bundle"), "zip", tmp_path, "tiny_bundle")
    zipped = loadModel(archive, sha256=sha256Of(archive))
    assert zipped.format == "bundle"
    assertSameNetwork(zipped.network, trainedUNet, probe)


def test_checksum_mismatch_is_refused(tmp_path, trainedUNet, probe):
    path = saveTorchScript(trainedUNet, tmp_path / "model.ts", SPEC, example=probe)
    with pytest.raises(DLError, match=r"model.ts' has SHA-256 [0-9a-f]{64}, expected 0{64}.*Fix: download it again"):
        loadModel(path, sha256="0" * 64)
    saveCheckpoint(trainedUNet, tmp_path / "ckpt.pt", "UNet", UNET_ARGS, SPEC)
    with pytest.raises(DLError, match="has SHA-256"):
        loadModel(tmp_path / "ckpt.json", sha256="f" * 64)


class Payload:
    """Unpickling this would run os.system: the classic malicious 'model'."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > pwned.txt",))


def test_pickled_code_is_refused(tmp_path, trainedUNet, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saveCheckpoint(trainedUNet, tmp_path / "evil.pt", "UNet", UNET_ARGS, SPEC)
    torch.save({"state_dict": trainedUNet.state_dict(), "extra": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(DLError, match="contains pickled Python objects.*Fix: save only the weights"):
        loadModel(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned.txt").exists()


def test_unknown_network_and_wrong_weights(tmp_path, trainedUNet):
    saveCheckpoint(trainedUNet, tmp_path / "m.pt", "UNet", UNET_ARGS, SPEC)
    data = json.loads((tmp_path / "m.json").read_text())
    data["network"]["name"] = "os.system"
    (tmp_path / "m.json").write_text(json.dumps(data))
    with pytest.raises(DLError, match="not a monai.networks.nets class"):
        loadModel(tmp_path / "m.json")
    data["network"] = {"name": "UNet", "args": {**UNET_ARGS, "channels": [8, 16]}}
    (tmp_path / "m.json").write_text(json.dumps(data))
    with pytest.raises(DLError, match="does not fit the network"):
        loadModel(tmp_path / "m.json")


def test_catalog_import_fetch_verify(tmp_path, trainedUNet, probe):
    path = saveTorchScript(trainedUNet, tmp_path / "src" / "seg.ts", SPEC, example=probe)
    catalog = ModelCatalog()
    entry = catalog.importFile(path, modelId="seg", title="Tiny segmenter")
    assert entry.sha256 == sha256Of(path) and entry.format == "torchscript"
    # a second catalog object reads the same JSON (as the CLI or Slicer would later)
    again = ModelCatalog()
    assert [e.id for e in again.list()] == ["seg"]
    model = again.load("seg")
    with torch.no_grad():
        assert torch.allclose(model.network(probe), trainedUNet(probe), atol=1e-6)
    assert again.verify("seg") == entry.sha256

    # a corrupted cache file is detected
    cached = again.cachedPath("seg")
    cached.write_bytes(cached.read_bytes()[:-10])
    with pytest.raises(DLError, match="has SHA-256"):
        again.verify("seg")

    with pytest.raises(DLError, match="expected 0{64}"):
        again.importFile(path, modelId="other", sha256="0" * 64)
    assert [e.id for e in ModelCatalog().list()] == ["seg"]


def test_catalog_download_from_url_is_verified_and_atomic(tmp_path, trainedUNet, probe):
    from DLCommon.catalog import CatalogEntry

    path = saveTorchScript(trainedUNet, tmp_path / "remote" / "seg.ts", SPEC, example=probe)
    catalog = ModelCatalog()
    catalog.add(CatalogEntry(id="good", url=path.as_uri(), sha256=sha256Of(path), format="torchscript"))
    catalog.add(CatalogEntry(id="bad", url=path.as_uri(), sha256="1" * 64, format="torchscript"))
    fractions = []
    fetched = catalog.fetch("good", lambda f, m: fractions.append(f))
    assert fetched.read_bytes() == path.read_bytes() and fractions[-1] == 1.0
    with pytest.raises(DLError, match="downloaded with SHA-256 .* but the catalog expects 1{64}"):
        catalog.fetch("bad")
    assert not catalog.cachedPath("bad").exists()
    assert not list(catalog.cachedPath("bad").parent.glob(".partial-*"))  # nothing half-written left
    with pytest.raises(DLError, match="Model 'nope' is not in the catalog"):
        catalog.fetch("nope")


def test_bundle_zip_with_path_traversal_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("b/configs/metadata.json", "{}")
        z.writestr("b/configs/inference.json", "{}")
        z.writestr("../../escaped.txt", "x")
    with pytest.raises(DLError, match="unsafe path"):
        loadModel(archive)
