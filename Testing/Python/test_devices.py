"""Device choice and the out-of-memory fallback."""

from __future__ import annotations

import pytest
import torch

from DLCommon import DLError, pickDevice, runWithOOMFallback


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pickDevice("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pickDevice("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pickDevice("auto") == torch.device("cuda")


def test_environment_override(monkeypatch):
    monkeypatch.setenv("MEDDL_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pickDevice("auto") == torch.device("cpu")
    assert pickDevice(None) == torch.device("cpu")


def test_unavailable_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DLError, match=r"Device 'cuda' was requested but .* no CUDA GPU\. Fix: use auto or cpu"):
        pickDevice("cuda")
    with pytest.raises(DLError, match="Device 'tpu9'"):
        pickDevice("tpu9")


def test_oom_fallback_halves_then_moves_to_cpu():
    calls = []

    def step(batchSize, device):
        calls.append((batchSize, device.type))
        if device.type != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return batchSize * 10

    result, report = runWithOOMFallback(step, 8, device=torch.device("cuda"))
    assert result == 10
    assert calls == [(8, "cuda"), (4, "cuda"), (2, "cuda"), (1, "cuda"), (1, "cpu")]
    assert report.degraded and report.device.type == "cpu" and "retried on the CPU" in str(report)


def test_oom_fallback_stops_when_smaller_fits():
    def step(batchSize, device):
        if batchSize > 3:
            raise RuntimeError("CUDA error: out of memory")
        return batchSize

    result, report = runWithOOMFallback(step, 16, device=torch.device("cpu"))
    assert result == 2 and report.batchSize == 2 and report.device.type == "cpu"


def test_other_errors_are_not_retried():
    calls = []

    def step(batchSize, device):
        calls.append(batchSize)
        raise ValueError("shape mismatch")

    with pytest.raises(ValueError):
        runWithOOMFallback(step, 8, device=torch.device("cpu"))
    assert calls == [8]


def test_oom_on_cpu_at_minimum_is_a_clear_error():
    def step(batchSize, device):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: out of memory")

    with pytest.raises(DLError, match="ran out of memory even with batch size 1 on cpu"):
        runWithOOMFallback(step, 2, device=torch.device("cpu"))
