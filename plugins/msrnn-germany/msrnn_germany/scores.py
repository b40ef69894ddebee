"""Precipitation scores of the MS-RNN code, computed on rain rates in mm/h.

Categorical scores at 0.5, 2, 5, 10 and 30 mm/h (MS-RNN config.py ``cfg.HKO.THRESHOLDS``). A pixel is an
*event* when its rain rate is at least the threshold (``>=``, util/numba_accelerated.py), in the truth and
in the forecast separately; over the test set each frame's pixels are counted into

=====================  ===========================  ==============================
                       truth >= T                   truth < T
forecast >= T          hits (H)                     false alarms (F)
forecast < T           misses (M)                   correct negatives (N)
=====================  ===========================  ==============================

summed over all clips, and the scores come from those sums (util/evaluation.py):
POD = H / (H + M), FAR = F / (H + F), CSI = H / (H + M + F),
HSS = 2 (H N - M F) / ((H + M)(M + N) + (H + F)(F + N)).
A score whose denominator is zero (e.g. no rain observed or forecast at 30 mm/h) is 0, as the MS-RNN
code's ``nan_to_num`` makes it; each score's ``mean`` is the mean of its per-frame values. A frame with a
NaN pixel (a forecast that diverged) scores NaN: no comparison with NaN holds, so it would be counted as dry.

Balanced errors weight each pixel by the truth's rain rate (``cfg.HKO.BALANCING_WEIGHTS`` = 1, 1, 2, 5,
10, 30 on the thresholds; util/numba_accelerated.py): weight 1 below 2 mm/h (1 below 0.5 and 1 from 0.5),
2 from 2, 5 from 5, 10 from 10 and 30 from 30 mm/h. ``b_mse`` / ``b_mae`` are the MS-RNN numbers: the
weighted squared / absolute error in pixel units [0, 1], summed over a frame's pixels and averaged over
clips. ``b_mse_mmh`` / ``b_mae_mmh`` weight the same way the error in mm/h, averaged over pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from msrnn_zoo.metrics import MetricReport, MetricResult, MetricSpec

from .scaling import unit_to_rain_torch

THRESHOLDS: tuple[float, ...] = (0.5, 2.0, 5.0, 10.0, 30.0)
WEIGHTS: tuple[float, ...] = (1.0, 1.0, 2.0, 5.0, 10.0, 30.0)
"""``WEIGHTS[k]`` for rain below ``THRESHOLDS[k]`` (and not below the one before); the last from 30 mm/h."""
CATEGORICAL = ("pod", "far", "csi", "hss")

_EVENT = ("event: rain >= {t:g} mm/h (inverse-scaled), truth and forecast each; hits/misses/false alarms/correct "
          "negatives summed over clips and pixels per frame; 0/0 -> 0 (MS-RNN nan_to_num); a frame with a NaN pixel -> "
          "NaN")
_FORMULA = {
    "pod": "H / (H + M)",
    "far": "F / (H + F)",
    "csi": "H / (H + M + F)",
    "hss": "2 (H N - M F) / ((H + M)(M + N) + (H + F)(F + N))",
}
_WEIGHTING = "weight by the truth: 1 below 2 mm/h, 2 from 2, 5 from 5, 10 from 10, 30 from 30 mm/h"


def metric_name(score: str, threshold: float) -> str:
    """``csi_0.5``, ``hss_30``: the MS-RNN code's column names."""
    return f"{score}_{threshold:g}"


def _specs(thresholds: Sequence[float]) -> dict[str, MetricSpec]:
    specs = {}
    for score in CATEGORICAL:
        for t in thresholds:
            name = metric_name(score, t)
            specs[name] = MetricSpec(name, f"{score.upper()}@{t:g}mm/h", f"{_FORMULA[score]}; {_EVENT.format(t=t)}",
                                     score != "far")
    specs["b_mse"] = MetricSpec("b_mse", "B-MSE", "sum over pixels of weight * (forecast - truth)^2, pixel units "
                                f"[0, 1], per frame, mean over clips (MS-RNN's number); {_WEIGHTING}", False)
    specs["b_mae"] = MetricSpec("b_mae", "B-MAE", "sum over pixels of weight * |forecast - truth|, pixel units "
                                f"[0, 1], per frame, mean over clips (MS-RNN's number); {_WEIGHTING}", False)
    specs["b_mse_mmh"] = MetricSpec("b_mse_mmh", "B-MSE [(mm/h)^2]", "mean over pixels of weight * (forecast - "
                                    f"truth)^2 in (mm/h)^2, per frame, mean over clips; {_WEIGHTING}", False)
    specs["b_mae_mmh"] = MetricSpec("b_mae_mmh", "B-MAE [mm/h]", "mean over pixels of weight * |forecast - truth| "
                                    f"in mm/h, per frame, mean over clips; {_WEIGHTING}", False)
    return specs


def balancing_weights(rain: torch.Tensor, thresholds: Sequence[float] = THRESHOLDS,
                      weights: Sequence[float] = WEIGHTS) -> torch.Tensor:
    """Each pixel's weight: ``weights[k]`` where ``k`` thresholds lie at or below its rain rate."""
    if len(weights) != len(thresholds) + 1:
        raise ValueError(f"need one weight more than thresholds, got {len(weights)} and {len(thresholds)}")
    bounds = torch.tensor(sorted(thresholds), dtype=rain.dtype, device=rain.device)
    table = torch.tensor(weights, dtype=rain.dtype, device=rain.device)
    return table[(rain.unsqueeze(-1) >= bounds).sum(-1)]


def contingency(pred_rain: torch.Tensor, truth_rain: torch.Tensor,
                thresholds: Sequence[float] = THRESHOLDS) -> torch.Tensor:
    """Counts ``(B, T, K, 4)`` (hits, misses, false alarms, correct negatives) per clip, frame and threshold."""
    bounds = torch.tensor(thresholds, dtype=truth_rain.dtype, device=truth_rain.device)
    pred = pred_rain.flatten(2).unsqueeze(-1) >= bounds  # (B, T, pixels, K)
    truth = truth_rain.flatten(2).unsqueeze(-1) >= bounds
    counts = [(pred & truth), (~pred & truth), (pred & ~truth), (~pred & ~truth)]
    return torch.stack([c.sum(2) for c in counts], dim=-1).to(torch.int64)


def categorical_scores(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """POD, FAR, CSI and HSS from counts ``(..., 4)``; 0 where a denominator is 0 (the MS-RNN convention)."""
    h, m, f, n = (counts[..., i].to(torch.float64) for i in range(4))

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))

    return {
        "pod": ratio(h, h + m),
        "far": ratio(f, h + f),
        "csi": ratio(h, h + m + f),
        "hss": ratio(2.0 * (h * n - m * f), (h + m) * (m + n) + (h + f) * (f + n)),
    }


class PrecipitationScores:
    """Running sums for the scores above over a test set; ``update`` takes [0, 1] tensors (B, T, 1, H, W)."""

    def __init__(self, to_rain: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 thresholds: Sequence[float] = THRESHOLDS, weights: Sequence[float] = WEIGHTS) -> None:
        self.to_rain = to_rain or unit_to_rain_torch
        self.thresholds = tuple(float(t) for t in thresholds)
        self.weights = tuple(float(w) for w in weights)
        if list(self.thresholds) != sorted(self.thresholds) or len(self.weights) != len(self.thresholds) + 1:
            raise ValueError("thresholds must increase and there must be one weight more than thresholds")
        self.specs = _specs(self.thresholds)
        self.counts: torch.Tensor | None = None
        """Summed contingency counts ``(T, K, 4)``: hits, misses, false alarms, correct negatives."""
        self._sums: dict[str, torch.Tensor] = {}
        self.samples = 0
        self._undefined: torch.Tensor | None = None
        """Clips per frame ``(T,)`` with a NaN rain rate, which no threshold test can count."""

    @torch.no_grad()
    def update(self, pred: torch.Tensor, truth: torch.Tensor) -> None:
        if pred.shape != truth.shape or pred.ndim != 5:
            raise ValueError(f"pred and truth must both be (B, T, C, H, W), got {tuple(pred.shape)} and "
                             f"{tuple(truth.shape)}.")
        if self.counts is not None and pred.shape[1] != self.counts.shape[0]:
            raise ValueError(f"every batch must score the same number of frames: had {self.counts.shape[0]}, "
                             f"got {pred.shape[1]}.")
        p = pred.detach().to(torch.float64)
        t = truth.detach().to(device=p.device, dtype=torch.float64)
        p_rain, t_rain = self.to_rain(p), self.to_rain(t)
        counts = contingency(p_rain, t_rain, self.thresholds).sum(0)
        self.counts = counts if self.counts is None else self.counts + counts.to(self.counts.device)
        undefined = (p_rain.isnan() | t_rain.isnan()).flatten(2).any(-1).sum(0)
        self._undefined = undefined if self._undefined is None else self._undefined + undefined.to(self.counts.device)
        w = balancing_weights(t_rain, self.thresholds, self.weights)
        values = {
            "b_mse": (w * (p - t).square()).flatten(2).sum(-1),
            "b_mae": (w * (p - t).abs()).flatten(2).sum(-1),
            "b_mse_mmh": (w * (p_rain - t_rain).square()).flatten(2).mean(-1),
            "b_mae_mmh": (w * (p_rain - t_rain).abs()).flatten(2).mean(-1),
        }
        for name, per_clip in values.items():
            total = per_clip.sum(0)
            self._sums[name] = self._sums[name] + total if name in self._sums else total
        self.samples += pred.shape[0]

    def result(self) -> MetricReport:
        if self.counts is None or self._undefined is None or self.samples == 0:
            raise RuntimeError("no batches were added; call update(pred, truth) first.")
        curves: dict[str, list[float]] = {}
        undefined = self._undefined[:, None] > 0
        for score, values in categorical_scores(self.counts).items():  # values (T, K)
            values = torch.where(undefined, torch.nan, values)
            for k, t in enumerate(self.thresholds):
                curves[metric_name(score, t)] = values[:, k].cpu().tolist()
        for name, total in self._sums.items():
            curves[name] = (total / self.samples).cpu().tolist()
        results = {name: MetricResult(spec, tuple(curves[name]), math.fsum(curves[name]) / len(curves[name]))
                   for name, spec in self.specs.items()}
        return MetricReport(results, self.samples, int(self.counts.shape[0]))

    def counts_dict(self) -> dict[str, Any]:
        """The summed contingency table, per frame and threshold, to audit the scores by hand (the metrics file
        holds only the scores :meth:`result` takes from it)."""
        if self.counts is None:
            return {}
        table = self.counts.cpu().tolist()
        return {f"{t:g}": {kind: [frame[k][i] for frame in table] for i, kind in
                           enumerate(("hits", "misses", "false_alarms", "correct_negatives"))}
                for k, t in enumerate(self.thresholds)}
