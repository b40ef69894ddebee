"""Video-prediction metrics whose conventions are stated, not assumed.

Published tables on Moving MNIST (MS-RNN, PredRNN, OpenSTL) report MSE and MAE as the *sum* over the
pixels of a frame in the [0, 1] range, averaged over clips, while other papers report the per-pixel mean
or use the [0, 255] range, so two numbers with the same name often differ by a factor of 4096 or 65025.
Every metric here therefore carries a :class:`MetricSpec` whose ``convention`` travels with its values
(into ``to_dict()`` and the CLI's output).

All functions take a forecast and its truth of shape ``(B, T, C, H, W)`` with values in [0, 1], on any
device, and compute in float64 so that sums over large frames and the variance terms of SSIM do not lose
precision. Per-frame values are averaged over the clips of the batch, giving shape ``(T,)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0
"""PSNR of a perfect frame is infinite; it is reported as this many dB so that means stay finite."""

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

Reduction = Literal["sum", "mean"]


@dataclass(frozen=True)
class MetricSpec:
    """What a metric's number means, so that a value is never printed without its convention."""

    name: str
    label: str
    convention: str
    higher_is_better: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _psnr_convention(cap: float) -> str:
    return f"dB from each frame's mean squared error, data range 1, averaged over clips; capped at {cap:g} dB"


_SUM = "sum over pixels and channels per frame, data range [0, 1]"
_MEAN = "mean over pixels and channels per frame, data range [0, 1]"
_SSIM = (
    f"Wang et al. 2004: Gaussian window {SSIM_WINDOW} (sigma {SSIM_SIGMA}), K1 {SSIM_K1}, K2 {SSIM_K2}, "
    "data range 1, valid region, per channel then averaged"
)

METRICS: Mapping[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("mse", "MSE", _SUM, False),
        MetricSpec("mae", "MAE", _SUM, False),
        MetricSpec("mse_pixel", "MSE/pixel", _MEAN, False),
        MetricSpec("mae_pixel", "MAE/pixel", _MEAN, False),
        MetricSpec("ssim", "SSIM", _SSIM, True),
        MetricSpec("psnr", "PSNR", _psnr_convention(PSNR_CAP_DB), True),
    )
}
"""Every metric the accumulator knows, by name; each frame's value is averaged over clips."""

DEFAULT_METRICS: tuple[str, ...] = tuple(METRICS)


def _check_pair(pred: torch.Tensor, truth: torch.Tensor) -> None:
    for what, tensor in (("pred", pred), ("truth", truth)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(tensor).__name__}.")
        if tensor.ndim != 5:
            raise ValueError(
                f"{what} must have shape (B, T, C, H, W), got {tuple(tensor.shape)} ({tensor.ndim} dims)."
            )
        if not tensor.is_floating_point():
            raise ValueError(f"{what} must be float in [0, 1], got dtype {tensor.dtype}.")
    if pred.shape != truth.shape:
        raise ValueError(
            f"pred and truth must have the same shape (B, T, C, H, W), got {tuple(pred.shape)} and "
            f"{tuple(truth.shape)}."
        )


def _as_float64(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return pred.to(torch.float64), truth.to(device=pred.device, dtype=torch.float64)


# Per-image values, shape (B, T): the accumulator sums these over clips.


def _squared_error(pred: torch.Tensor, truth: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    p, t = _as_float64(pred, truth)
    err = (p - t).square().flatten(2)
    return err.sum(-1) if reduction == "sum" else err.mean(-1)


def _absolute_error(pred: torch.Tensor, truth: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    p, t = _as_float64(pred, truth)
    err = (p - t).abs().flatten(2)
    return err.sum(-1) if reduction == "sum" else err.mean(-1)


def _psnr(pred: torch.Tensor, truth: torch.Tensor, cap: float) -> torch.Tensor:
    mse = _squared_error(pred, truth, "mean")
    # Flooring the error at the value whose PSNR is the cap caps perfect frames without a special case.
    return 10.0 * torch.log10(1.0 / mse.clamp_min(10.0 ** (-cap / 10.0)))


def _gaussian_window(device: torch.device) -> torch.Tensor:
    radius = SSIM_WINDOW // 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return g / g.sum()


def _ssim(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    b, t, c, h, w = pred.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}.")
    p, q = _as_float64(pred, truth)
    x, y = p.reshape(b * t, c, h, w), q.reshape(b * t, c, h, w)
    # One depthwise pass filters all five moments of every channel; 'valid' convolution is skimage's
    # filter-then-crop, since the cropped border is exactly where its reflection padding would be read.
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    g = _gaussian_window(stack.device)
    channels = stack.shape[1]
    stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    mx, my, mxx, myy, mxy = stack.split(c, dim=1)
    vx, vy, cov = mxx - mx * mx, myy - my * my, mxy - mx * my
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return ssim_map.mean(dim=(-2, -1)).mean(dim=-1).reshape(b, t)


def _per_image_fns(psnr_cap: float) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    return {
        "mse": lambda p, t: _squared_error(p, t, "sum"),
        "mae": lambda p, t: _absolute_error(p, t, "sum"),
        "mse_pixel": lambda p, t: _squared_error(p, t, "mean"),
        "mae_pixel": lambda p, t: _absolute_error(p, t, "mean"),
        "ssim": _ssim,
        "psnr": lambda p, t: _psnr(p, t, psnr_cap),
    }


def _check_reduction(reduction: str) -> None:
    if reduction not in ("sum", "mean"):
        raise ValueError(
            f"reduction must be 'sum' (the field's tables) or 'mean' (per pixel), got {reduction!r}."
        )


def mse_per_frame(pred: torch.Tensor, truth: torch.Tensor, reduction: Reduction = "sum") -> torch.Tensor:
    """Squared error per frame, ``(T,)``; ``"sum"`` over pixels is what MS-RNN/PredRNN tables report."""
    _check_pair(pred, truth)
    _check_reduction(reduction)
    return _squared_error(pred, truth, reduction).mean(0)


def mae_per_frame(pred: torch.Tensor, truth: torch.Tensor, reduction: Reduction = "sum") -> torch.Tensor:
    """Absolute error per frame, ``(T,)``; ``"sum"`` over pixels is what MS-RNN/PredRNN tables report."""
    _check_pair(pred, truth)
    _check_reduction(reduction)
    return _absolute_error(pred, truth, reduction).mean(0)


def ssim_per_frame(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """SSIM per frame, ``(T,)``, matching skimage's Gaussian, population-covariance SSIM so numbers compare.

    Frames must be at least 11x11 pixels (the window); like skimage, the 5-pixel border is not scored.
    """
    _check_pair(pred, truth)
    return _ssim(pred, truth).mean(0)


def psnr_per_frame(pred: torch.Tensor, truth: torch.Tensor, cap: float = PSNR_CAP_DB) -> torch.Tensor:
    """PSNR per frame, ``(T,)``: per image then averaged over clips, with a perfect frame at ``cap`` dB.

    Averaging per-image dB (rather than converting the batch's mean error) is what the field's
    evaluation scripts do; the cap keeps one identical frame from making the mean infinite.
    """
    _check_pair(pred, truth)
    return _psnr(pred, truth, cap).mean(0)


def copy_last_frame(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """The zero-effort baseline any model must beat: the last context frame, held for ``horizon`` steps."""
    if not isinstance(context, torch.Tensor) or context.ndim != 5:
        shape = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
        raise ValueError(f"context must be a tensor of shape (B, T, C, H, W), got {shape}.")
    if context.shape[1] < 1:
        raise ValueError("context must hold at least one frame.")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}.")
    return context[:, -1:].repeat(1, horizon, 1, 1, 1)


@dataclass(frozen=True)
class MetricResult:
    """One metric over a test set: its per-frame curve, the mean of that curve, and what they mean."""

    spec: MetricSpec
    per_frame: tuple[float, ...]
    mean: float

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "mean": self.mean, "per_frame": list(self.per_frame)}


@dataclass(frozen=True)
class MetricReport:
    """All metrics over a test set; ``samples`` clips of ``frames`` forecast frames each."""

    metrics: Mapping[str, MetricResult]
    samples: int
    frames: int

    def __getitem__(self, name: str) -> MetricResult:
        return self.metrics[name]

    def __iter__(self) -> Iterator[MetricResult]:
        return iter(self.metrics.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, lists and strings, ready for ``json.dump``."""
        return {
            "samples": self.samples,
            "frames": self.frames,
            "metrics": {name: result.to_dict() for name, result in self.metrics.items()},
        }


class MetricAccumulator:
    """Running sums of per-frame metrics, so a whole test set is scored without keeping its forecasts.

    Each batch adds its per-clip values; ``result()`` divides by the number of clips, so the outcome
    does not depend on how the test set was split into batches.
    """

    def __init__(self, metrics: Sequence[str] | None = None, *, psnr_cap: float = PSNR_CAP_DB) -> None:
        names = tuple(DEFAULT_METRICS if metrics is None else metrics)
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}.")
        if not names:
            raise ValueError("at least one metric is needed.")
        self.names = names
        self.psnr_cap = float(psnr_cap)
        specs = dict(METRICS)
        specs["psnr"] = dataclasses.replace(METRICS["psnr"], convention=_psnr_convention(self.psnr_cap))
        self.specs: dict[str, MetricSpec] = {n: specs[n] for n in names}
        self._fns = _per_image_fns(self.psnr_cap)
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._samples = 0
        self._frames: int | None = None

    @property
    def samples(self) -> int:
        return self._samples

    @torch.no_grad()
    def update(self, pred: torch.Tensor, truth: torch.Tensor) -> None:
        _check_pair(pred, truth)
        if self._frames is not None and pred.shape[1] != self._frames:
            raise ValueError(
                f"every batch must forecast the same number of frames: had {self._frames}, "
                f"got {pred.shape[1]}."
            )
        pred, truth = pred.detach(), truth.detach()
        for name in self.names:
            total = self._fns[name](pred, truth).sum(0)
            if name in self._sums:
                self._sums[name] += total.to(self._sums[name].device)
            else:
                self._sums[name] = total
        self._frames = pred.shape[1]
        self._samples += pred.shape[0]

    def result(self) -> MetricReport:
        if self._samples == 0 or self._frames is None:
            raise RuntimeError("no batches were added; call update(pred, truth) first.")
        results = {}
        for name in self.names:
            curve = (self._sums[name] / self._samples).cpu().tolist()
            results[name] = MetricResult(self.specs[name], tuple(curve), math.fsum(curve) / len(curve))
        return MetricReport(results, self._samples, self._frames)


def evaluate(
    pred: torch.Tensor,
    truth: torch.Tensor,
    metrics: Sequence[str] | None = None,
    *,
    psnr_cap: float = PSNR_CAP_DB,
) -> MetricReport:
    """Every metric of one batch at once, for forecasts already in memory."""
    accumulator = MetricAccumulator(metrics, psnr_cap=psnr_cap)
    accumulator.update(pred, truth)
    return accumulator.result()


__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "PSNR_CAP_DB",
    "MetricAccumulator",
    "MetricReport",
    "MetricResult",
    "MetricSpec",
    "copy_last_frame",
    "evaluate",
    "mae_per_frame",
    "mse_per_frame",
    "psnr_per_frame",
    "ssim_per_frame",
]
