"""The precision names: what each sets while it runs, what it gives back, and what a user is told where one cannot
do what it says."""

import pytest
import torch

from msrnn_zoo.precision import autocast, float32_products, precision_note


@pytest.mark.parametrize("name", ["fp32", "bf16", "fp16"])
def test_only_tf32_touches_the_processs_float32_products(name):
    torch.set_float32_matmul_precision("medium")  # a caller's own choice, kept by the others
    try:
        with float32_products(name), autocast(name, "cpu"):
            assert torch.get_float32_matmul_precision() == "medium"
        with float32_products("tf32"):
            assert torch.get_float32_matmul_precision() == "high"
            with autocast("tf32", "cpu"):  # nested, as a training step holds it around autocast
                assert torch.get_float32_matmul_precision() == "high"
            assert torch.get_float32_matmul_precision() == "high"
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision("highest")


def test_an_unknown_precision_is_named():
    with pytest.raises(ValueError, match="Unknown precision 'tf16'; use one of fp32, bf16, fp16, tf32"), \
            float32_products("tf16"):
        pass


def test_tf32_says_where_it_computes_fp32(monkeypatch):
    assert precision_note("bf16", "cpu") is None and precision_note("fp32", "cuda") is None
    assert "tf32 computes fp32 on cpu" in precision_note("tf32", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # a V100
    assert "from Ampere (compute capability 8.0) on" in precision_note("tf32", "cuda:0")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # an H100
    assert precision_note("tf32", "cuda") is None
