"""--amp on CPUs with and without native bf16 (engine/training/losses.py amp_active/autocast)."""
import pytest
import torch

from engine.training import losses


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setenv("GSVNET_NO_BF16", "1")
    losses.cpu_has_native_bf16.cache_clear()
    losses._say_fp32_once.cache_clear()
    yield
    monkeypatch.delenv("GSVNET_NO_BF16")
    losses.cpu_has_native_bf16.cache_clear()
    losses._say_fp32_once.cache_clear()


def _conv_dtype(device, amp: bool) -> torch.dtype:
    conv = torch.nn.Conv2d(3, 4, 3)
    with losses.autocast(device, amp):
        return conv(torch.randn(1, 3, 8, 8)).dtype


def test_without_native_bf16_amp_runs_fp32_and_says_so_once(no_native_bf16, capsys):
    cpu = torch.device("cpu")
    assert not losses.cpu_has_native_bf16()
    assert _conv_dtype(cpu, True) == torch.float32
    assert _conv_dtype(cpu, True) == torch.float32
    err = capsys.readouterr().err
    assert err.count("no native bf16") == 1 and "fp32" in err
    assert losses.amp_active(cpu, True) is False and losses.amp_active(cpu, False) is False
    assert losses.amp_active(torch.device("cuda"), True) is True      # CUDA keeps fp16 autocast
    assert not losses.make_scaler(cpu, True).is_enabled()


def test_with_native_bf16_amp_is_bf16(capsys):
    losses.cpu_has_native_bf16.cache_clear()
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bf16")
    cpu = torch.device("cpu")
    assert _conv_dtype(cpu, True) == torch.bfloat16
    assert _conv_dtype(cpu, False) == torch.float32
    assert "no native bf16" not in capsys.readouterr().err
