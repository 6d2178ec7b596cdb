"""Which ONNX Runtime provider runs the models: CUDA when offered, else CPU, said once."""

from __future__ import annotations

import logging

import onnxruntime as ort
import pytest

from livekit_avatar_plugin import _onnx
from livekit_avatar_plugin._paths import model_path

CUDA_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cuda_is_chosen_when_onnxruntime_offers_it():
    assert _onnx.choose_providers(CUDA_BUILD) == [_onnx.CUDA, _onnx.CPU]
    assert _onnx.choose_providers(CUDA_BUILD, "cuda") == [_onnx.CUDA, _onnx.CPU]
    assert _onnx.choose_providers(CUDA_BUILD, "cpu") == [_onnx.CPU]


def test_cpu_when_onnxruntime_offers_no_gpu():
    cpu_only = ["AzureExecutionProvider", "CPUExecutionProvider"]
    assert _onnx.choose_providers(cpu_only) == [_onnx.CPU]
    with pytest.raises(_onnx.ProviderUnavailableError, match="install the 'gpu' extra"):
        _onnx.choose_providers(cpu_only, "cuda")


def test_the_installed_onnxruntime_decides(monkeypatch):
    available = ort.get_available_providers()
    expected = [_onnx.CUDA, _onnx.CPU] if _onnx.CUDA in available else [_onnx.CPU]
    monkeypatch.delenv(_onnx.PROVIDER_ENV, raising=False)
    assert _onnx.choose_providers(available, _onnx.provider_preference()) == expected
    monkeypatch.setenv(_onnx.PROVIDER_ENV, "tpu")
    with pytest.raises(ValueError, match=_onnx.PROVIDER_ENV):
        _onnx.provider_preference()


def test_one_log_line_per_model_names_the_provider(caplog, monkeypatch):
    monkeypatch.delenv(_onnx.PROVIDER_ENV, raising=False)
    path = model_path("lipsync", "lipsync.onnx")
    with caplog.at_level(logging.INFO, logger="livekit_avatar_plugin.onnx"):
        session = _onnx.create_session(path, label="lip-sync model")
    running = session.get_providers()[0]
    lines = [r.getMessage() for r in caplog.records if r.name == "livekit_avatar_plugin.onnx"]
    assert lines == [f"lip-sync model (lipsync.onnx) runs on {running}"]
    if _onnx.CUDA not in ort.get_available_providers():
        assert running == _onnx.CPU


def test_forced_cuda_without_a_gpu_build_fails_naming_the_fix(monkeypatch):
    if _onnx.CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    monkeypatch.setenv(_onnx.PROVIDER_ENV, "cuda")
    with pytest.raises(_onnx.ProviderUnavailableError, match="onnxruntime-gpu"):
        _onnx.create_session(model_path("lipsync", "lipsync.onnx"), label="lip-sync model")
