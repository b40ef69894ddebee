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
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .data import ClipProtocol

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
    if 0 in pred.shape[1:]:  # a mean over no frames or pixels is NaN, or a division by zero in result()
        raise ValueError(f"pred and truth hold no frames or no pixels (shape {tuple(pred.shape)}); score at least one "
                         "frame of at least 1x1 pixels.")


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


def _check_cap(cap: float) -> None:
    if not cap > 0:  # a cap at or below 0 dB floors every error, and each PSNR reads as the cap
        raise ValueError(f"The PSNR cap must be a positive number of dB (default {PSNR_CAP_DB:g}; math.inf for no "
                         f"cap), got {cap!r}.")


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
    _check_cap(cap)
    return _psnr(pred, truth, cap).mean(0)


def _check_context(context: torch.Tensor, horizon: int) -> None:
    if not isinstance(context, torch.Tensor) or context.ndim != 5:
        shape = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
        raise ValueError(f"context must be a tensor of shape (B, T, C, H, W), got {shape}.")
    if context.shape[1] < 1:
        raise ValueError("context must hold at least one frame.")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}.")


def copy_last_frame(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """The zero-effort baseline any model must beat: the last context frame, held for ``horizon`` steps."""
    _check_context(context, horizon)
    return context[:, -1:].repeat(1, horizon, 1, 1, 1)


def mean_frame(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """Each clip's mean context frame, held: beats copy-last-frame where motion is noise around a mean."""
    _check_context(context, horizon)
    return context.mean(dim=1, keepdim=True).repeat(1, horizon, 1, 1, 1)


def blank(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """All-zero frames: the score of predicting nothing, which sparse data (radar, digits) makes look good."""
    _check_context(context, horizon)
    return torch.zeros_like(context[:, :1]).repeat(1, horizon, 1, 1, 1)


Baseline = Callable[[torch.Tensor, int], torch.Tensor]
"""``baseline(context (B, T_in, C, H, W) in [0, 1], horizon) -> forecast (B, horizon, C, H, W)``.

Must accept any context length >= 1: ``evaluate --frames all`` also asks it for frame ``k`` from the
first ``k`` frames (the input reconstructions the MS-RNN code scores)."""

BASELINES: Mapping[str, Baseline] = {
    "copy-last-frame": copy_last_frame,
    "mean-frame": mean_frame,
    "blank": blank,
}
"""The baselines every evaluation scores beside the model; datasets may add their own."""


@dataclass(frozen=True)
class ScoreContext:
    """What a dataset's score hook is told about an evaluation."""

    protocol: ClipProtocol
    """The protocol the run was trained with."""
    in_frames: int
    out_frames: int
    frames: Literal["future", "all"]
    """``future``: the forecast frames only; ``all``: the T-1 frames predicted from frame 2 on."""
    to_physical: Callable[[torch.Tensor], torch.Tensor] | None
    """The dataset's inverse scaling bound to its store, or ``None`` if it has no physical unit."""
    unit: str = ""


class ScoreAccumulator(Protocol):
    """Running scores over a test set: ``update`` per batch on [0, 1] tensors (B, T, C, H, W)."""

    def update(self, pred: torch.Tensor, truth: torch.Tensor) -> None: ...

    def result(self) -> MetricReport: ...


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
        if isinstance(metrics, str):  # one name, not its letters ("unknown metrics ['m', 's', 'e']")
            metrics = (metrics,)
        # once each: a name given twice was summed twice per batch, and its mean read double
        names = tuple(dict.fromkeys(DEFAULT_METRICS if metrics is None else metrics))
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}.")
        if not names:
            raise ValueError("at least one metric is needed.")
        _check_cap(psnr_cap)
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


class PhysicalErrorAccumulator:
    """MAE and RMSE in a dataset's physical unit (flow counts, mm/h), per frame and averaged over clips."""

    def __init__(self, to_physical: Callable[[torch.Tensor], torch.Tensor], unit: str, description: str = "") -> None:
        self.to_physical = to_physical
        where = f" ({description})" if description else ""
        self.specs = {
            "mae_physical": MetricSpec("mae_physical", f"MAE ({unit})", f"mean absolute error per pixel and channel "
                                       f"in {unit}{where}, per frame, averaged over clips", False),
            "rmse_physical": MetricSpec("rmse_physical", f"RMSE ({unit})", f"square root of each frame's mean "
                                        f"squared error in {unit}{where}, averaged over clips", False),
        }
        self._sums: dict[str, torch.Tensor] = {}
        self._samples = 0
        self._frames: int | None = None

    @torch.no_grad()
    def update(self, pred: torch.Tensor, truth: torch.Tensor) -> None:
        _check_pair(pred, truth)
        if self._frames is not None and pred.shape[1] != self._frames:  # (1,) + (T,) broadcast into a wrong curve
            raise ValueError(
                f"every batch must forecast the same number of frames: had {self._frames}, "
                f"got {pred.shape[1]}."
            )
        p = self.to_physical(pred.detach().to(torch.float64))
        t = self.to_physical(truth.detach().to(torch.float64))
        diff = (p - t).flatten(2)
        values = {"mae_physical": diff.abs().mean(-1).sum(0), "rmse_physical": diff.square().mean(-1).sqrt().sum(0)}
        for name, total in values.items():
            self._sums[name] = self._sums[name] + total if name in self._sums else total
        self._samples += pred.shape[0]
        self._frames = pred.shape[1]

    def result(self) -> MetricReport:
        if self._samples == 0 or self._frames is None:
            raise RuntimeError("no batches were added; call update(pred, truth) first.")
        results = {}
        for name, spec in self.specs.items():
            curve = (self._sums[name] / self._samples).cpu().tolist()
            results[name] = MetricResult(spec, tuple(curve), math.fsum(curve) / len(curve))
        return MetricReport(results, self._samples, self._frames)


def merge_reports(reports: Sequence[MetricReport]) -> MetricReport:
    """One report holding the metrics of several accumulators run on the same clips."""
    if not reports:
        raise ValueError("no reports to merge")
    merged: dict[str, MetricResult] = {}
    for report in reports:
        if (report.samples, report.frames) != (reports[0].samples, reports[0].frames):
            raise ValueError(f"reports scored different clips: {report.samples} clips x {report.frames} frames vs "
                             f"{reports[0].samples} x {reports[0].frames}")
        clash = sorted(set(merged) & set(report.metrics))
        if clash:
            raise ValueError(f"two score sets both define {', '.join(clash)}; a dataset's scores need their own names")
        merged.update(report.metrics)
    return MetricReport(merged, reports[0].samples, reports[0].frames)


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
    "BASELINES",
    "DEFAULT_METRICS",
    "METRICS",
    "PSNR_CAP_DB",
    "MetricAccumulator",
    "MetricReport",
    "MetricResult",
    "MetricSpec",
    "PhysicalErrorAccumulator",
    "ScoreAccumulator",
    "ScoreContext",
    "blank",
    "copy_last_frame",
    "evaluate",
    "mae_per_frame",
    "mean_frame",
    "merge_reports",
    "mse_per_frame",
    "psnr_per_frame",
    "ssim_per_frame",
]
