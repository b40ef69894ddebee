"""The conformance kit: what every cell of the zoo must satisfy, as reusable checks.

A plugin's tests call these with its cell's name (``run_conformance("convlstm")``), which is also how a
third party proves a new cell works in both the single-scale and the multi-scale network. The parity
helpers compare against fixtures of the original implementation (safetensors holding ``weights.*``,
``input`` (T, B, C, H, W) and ``output`` (T-1, B, C, H, W), metadata with ``in_len``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .factory import create
from .network import Forecaster


def small(name: str, **overrides: Any) -> Forecaster:
    """A small model of ``name`` for fast checks (hidden 8 unless told otherwise)."""
    return create(name, **{"hidden_channels": 8, **overrides})


def check_shapes(name: str, size: int = 16, **overrides: Any) -> None:
    """Forecast shapes, and every layer's output at its schedule's resolution."""
    torch.manual_seed(0)
    model = small(name, **overrides)
    frames = torch.rand(2, 3, model.config.in_channels, size, size)
    future = model(frames, horizon=2)
    assert future.shape == (2, 2, model.config.in_channels, size, size), future.shape
    state = model.init_state(2, size, size)
    _, state = model.step(frames[:, 0], state)
    for i, (h, w) in enumerate(model.schedule.sizes(size, size)):
        for tensor in state.layers[i]:
            assert tensor.shape[0] == 2, (i, tensor.shape)
        assert state.layers[i][0].shape[-2:] == (h, w), (i, state.layers[i][0].shape, (h, w))


def check_step_equals_forward(name: str, size: int = 16, **overrides: Any) -> None:
    """The streaming API and the batch forward are one computation."""
    torch.manual_seed(0)
    model = small(name, **overrides).eval()
    frames = torch.rand(2, 3, model.config.in_channels, size, size)
    with torch.no_grad():
        batch = model(frames, horizon=2)
        state = None
        for t in range(3):
            forecast, state = model.step(frames[:, t], state)
        second, _ = model.step(forecast, state)
    torch.testing.assert_close(torch.stack([forecast, second], 1), batch)


def check_dtype_and_device(name: str, size: int = 16, **overrides: Any) -> None:
    """The model and its state move together: float64 in, float64 state and forecast out."""
    torch.manual_seed(0)
    model = small(name, **overrides).double()
    frames = torch.rand(1, 2, model.config.in_channels, size, size, dtype=torch.float64)
    state = model.init_state(1, size, size)
    for tensor in state.layers[0]:
        assert tensor.dtype == torch.float64
    forecast, state = model.step(frames[:, 0], state)
    assert forecast.dtype == torch.float64
    moved = state.to(torch.float32)
    assert all(t.dtype == torch.float32 for s in moved.layers for t in s)
    if torch.cuda.is_available():
        cuda = small(name, **overrides).cuda()
        assert cuda(frames.float().cuda(), horizon=1).is_cuda


def check_training_step(name: str, size: int = 16, steps: int = 5, **overrides: Any) -> list[float]:
    """A few Adam steps on one clip lower the loss, and every parameter receives a finite gradient."""
    torch.manual_seed(0)
    model = small(name, **overrides)
    frames = torch.rand(2, 4, model.config.in_channels, size, size)
    teacher = torch.ones(2, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        prediction, aux = model.forward_train(frames, teacher)
        loss = torch.nn.functional.mse_loss(prediction, frames[:, 1:])
        if aux is not None:
            loss = loss + aux
        loss.backward()
        if step == 0:
            for pname, p in model.named_parameters():
                assert p.grad is not None, f"{pname} received no gradient"
                assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], f"loss did not go down: {losses}"
    return losses


def _loss_and_grads(model: Forecaster, frames: torch.Tensor,
                    teacher: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    prediction, aux = model.forward_train(frames, teacher)
    loss = (prediction - frames[:, 1:]).pow(2).mean() + (aux if aux is not None else 0)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def check_grad_checkpointing(name: str, size: int = 16, **overrides: Any) -> None:
    """Recomputing each step in the backward pass gives the plain path's loss and gradients, exactly."""
    torch.manual_seed(0)
    model = small(name, **overrides)
    frames = torch.rand(2, 4, model.config.in_channels, size, size)
    teacher = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    loss, grads = _loss_and_grads(model, frames, teacher)
    model.set_grad_checkpointing(True)
    try:
        again, regrads = _loss_and_grads(model, frames, teacher)
    finally:
        model.set_grad_checkpointing(False)
    torch.testing.assert_close(again, loss, rtol=0, atol=0)
    assert regrads.keys() == grads.keys()
    for key, grad in grads.items():
        torch.testing.assert_close(regrads[key], grad, rtol=0, atol=0, msg=lambda m, k=key: f"{k}: {m}")


def run_conformance(cell: str, size: int = 16, **overrides: Any) -> None:
    """Every check, on both the single-scale and the multi-scale model of ``cell``."""
    for name in (cell, f"ms-{cell}"):
        check_shapes(name, size, **overrides)
        check_step_equals_forward(name, size, **overrides)
        check_dtype_and_device(name, size, **overrides)
        check_training_step(name, size, **overrides)
        check_grad_checkpointing(name, size, **overrides)


def load_fixture(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a parity fixture."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118


def parity_error(path: str | Path, name: str | None = None, **options: Any) -> float:
    """Max |difference| between the original's test-mode output and ours, from the original's weights.

    The original's test mode feeds the ground truth for the first ``in_len`` steps and its own forecast
    afterwards: in our terms, ``forward_train`` with a teacher mask of ones then zeros.
    """
    from .convert import from_original

    tensors, meta = load_fixture(path)
    name = name or meta["model"]
    weights = {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}
    model = from_original(weights, name, kernel_size=int(meta.get("kernel_size", 3)), **options).eval()
    frames = tensors["input"].transpose(0, 1).contiguous()
    in_len = int(meta["in_len"])
    b, t = frames.shape[:2]
    teacher = torch.zeros(b, t - 1)
    teacher[:, :in_len] = 1.0
    with torch.no_grad():
        prediction, _ = model.forward_train(frames, teacher)
        future = model(frames[:, :in_len], horizon=t - in_len)
    reference = tensors["output"].transpose(0, 1)
    return max(float((prediction - reference).abs().max()), float((future - reference[:, in_len - 1:]).abs().max()))
