"""Metric values against hand and numpy computations, and the conventions that travel with them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from msrnn_zoo.metrics import (
    DEFAULT_METRICS,
    METRICS,
    PSNR_CAP_DB,
    MetricAccumulator,
    PhysicalErrorAccumulator,
    copy_last_frame,
    evaluate,
    mae_per_frame,
    mse_per_frame,
    psnr_per_frame,
    ssim_per_frame,
)


def _pair(b: int = 2, t: int = 3, c: int = 1, h: int = 16, w: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.rand(b, t, c, h, w, generator=g)
    pred = (truth + 0.1 * torch.randn(b, t, c, h, w, generator=g)).clamp(0, 1)
    return pred, truth


def test_mse_and_mae_sum_over_pixels_on_a_hand_example():
    truth = torch.zeros(2, 2, 1, 2, 2)
    pred = torch.zeros(2, 2, 1, 2, 2)
    pred[0, 0] = 0.5  # 4 pixels off by 0.5: squared sum 1.0, absolute sum 2.0
    pred[1, 0, 0, 0, 0] = 1.0  # 1 pixel off by 1: squared sum 1.0, absolute sum 1.0
    pred[0, 1, 0, 1, 1] = 0.2  # frame 1 of clip 0 only: squared 0.04, absolute 0.2
    mse = mse_per_frame(pred, truth)
    mae = mae_per_frame(pred, truth)
    assert mse.shape == (2,) and mae.shape == (2,)
    torch.testing.assert_close(mse, torch.tensor([1.0, 0.02], dtype=torch.float64))
    torch.testing.assert_close(mae, torch.tensor([1.5, 0.1], dtype=torch.float64))
    torch.testing.assert_close(mse_per_frame(pred, truth, "mean"), mse / 4)
    torch.testing.assert_close(mae_per_frame(pred, truth, reduction="mean"), mae / 4)


def test_sums_include_channels_and_match_numpy():
    pred, truth = _pair(b=3, t=4, c=3, h=5, w=7)
    p, q = pred.double().numpy(), truth.double().numpy()
    np.testing.assert_allclose(mse_per_frame(pred, truth).numpy(), ((p - q) ** 2).sum((2, 3, 4)).mean(0))
    np.testing.assert_allclose(mae_per_frame(pred, truth).numpy(), np.abs(p - q).sum((2, 3, 4)).mean(0))
    np.testing.assert_allclose(
        mse_per_frame(pred, truth, "mean").numpy(), ((p - q) ** 2).mean((2, 3, 4)).mean(0)
    )


def test_psnr_is_per_image_then_averaged():
    pred, truth = _pair(b=3, t=2, c=1, h=8, w=8)
    p, q = pred.double().numpy(), truth.double().numpy()
    expected = (10 * np.log10(1.0 / ((p - q) ** 2).mean((2, 3, 4)))).mean(0)
    np.testing.assert_allclose(psnr_per_frame(pred, truth).numpy(), expected, rtol=1e-10)


def test_identical_inputs_give_perfect_scores():
    _, truth = _pair(b=2, t=3, c=3, h=16, w=16)
    assert torch.equal(mse_per_frame(truth, truth), torch.zeros(3, dtype=torch.float64))
    assert torch.equal(mae_per_frame(truth, truth), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(ssim_per_frame(truth, truth), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(
        psnr_per_frame(truth, truth), torch.full((3,), PSNR_CAP_DB, dtype=torch.float64)
    )
    assert psnr_per_frame(truth, truth, cap=60.0).tolist() == pytest.approx([60.0] * 3)


def test_psnr_cap_applies_per_image_not_per_batch():
    pred, truth = _pair(b=2, t=1, c=1, h=8, w=8)
    pred[0] = truth[0]  # one perfect clip: its 100 dB is averaged with the other's finite value
    other = 10 * math.log10(1.0 / (pred[1] - truth[1]).double().square().mean().item())
    assert psnr_per_frame(pred, truth).item() == pytest.approx((PSNR_CAP_DB + other) / 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_agrees_with_skimage(channels):
    metrics = pytest.importorskip("skimage.metrics")
    pred, truth = _pair(b=2, t=2, c=channels, h=20, w=23, seed=channels)
    ours = ssim_per_frame(pred, truth)
    for t in range(2):
        values = []
        for b in range(2):
            x = pred[b, t].double().permute(1, 2, 0).numpy()
            y = truth[b, t].double().permute(1, 2, 0).numpy()
            values.append(
                metrics.structural_similarity(
                    x,
                    y,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=1.0,
                    channel_axis=-1,
                )
            )
        assert ours[t].item() == pytest.approx(float(np.mean(values)), abs=1e-4)


def test_ssim_refuses_frames_smaller_than_its_window():
    pred, truth = _pair(h=8, w=16)
    with pytest.raises(ValueError, match="11x11"):
        ssim_per_frame(pred, truth)


def test_shape_and_ndim_errors_are_clear():
    pred, truth = _pair()
    with pytest.raises(ValueError, match="same shape"):
        mse_per_frame(pred, truth[:, :2])
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        psnr_per_frame(pred[0], truth[0])
    with pytest.raises(ValueError, match="float"):
        mae_per_frame((pred * 255).to(torch.uint8), (truth * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="reduction"):
        mse_per_frame(pred, truth, "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same shape"):
        MetricAccumulator().update(pred, truth[:1])


def test_accumulator_over_two_batches_equals_one_batch_of_both():
    pred, truth = _pair(b=5, t=3, c=1, h=16, w=16)
    split = MetricAccumulator()
    split.update(pred[:2], truth[:2])
    split.update(pred[2:], truth[2:])
    whole = MetricAccumulator()
    whole.update(pred, truth)
    a, b = split.result(), whole.result()
    assert a.samples == b.samples == 5 and a.frames == b.frames == 3
    for name in DEFAULT_METRICS:
        assert a[name].per_frame == pytest.approx(b[name].per_frame, rel=1e-12)
        assert a[name].mean == pytest.approx(b[name].mean, rel=1e-12)
    torch.testing.assert_close(
        torch.tensor(b["mse"].per_frame, dtype=torch.float64), mse_per_frame(pred, truth)
    )
    torch.testing.assert_close(
        torch.tensor(b["ssim"].per_frame, dtype=torch.float64), ssim_per_frame(pred, truth)
    )
    assert b["psnr"].mean == pytest.approx(psnr_per_frame(pred, truth).mean().item())


def test_accumulator_rejects_changing_horizon_and_empty_result():
    acc = MetricAccumulator(["mse"])
    with pytest.raises(RuntimeError, match="update"):
        acc.result()
    pred, truth = _pair(t=3)
    acc.update(pred, truth)
    with pytest.raises(ValueError, match="same number of frames"):
        acc.update(pred[:, :2], truth[:, :2])
    acc.reset()
    acc.update(pred[:, :2], truth[:, :2])
    assert acc.result().frames == 2
    with pytest.raises(ValueError, match="unknown metrics"):
        MetricAccumulator(["fvd"])


def test_physical_errors_refuse_a_changing_horizon_and_average_over_clips_by_hand():
    """A batch of 1 frame, then one of 2, was broadcast into a 2-frame curve that mixed the two."""
    phys = PhysicalErrorAccumulator(lambda x: 10.0 * x, "mm/h")
    truth = torch.zeros(1, 2, 1, 1, 2)
    pred = torch.tensor([[[[[0.1, 0.3]]], [[[0.2, 0.2]]]]])  # errors 1, 3 mm/h in frame 1; 2, 2 in frame 2
    phys.update(pred, truth)
    phys.update(torch.zeros(2, 2, 1, 1, 2), torch.zeros(2, 2, 1, 1, 2))  # two perfect clips
    report = phys.result()
    assert report["mae_physical"].per_frame == pytest.approx((2.0 / 3, 2.0 / 3))  # (2 + 0 + 0) / 3 clips
    assert report["rmse_physical"].per_frame == pytest.approx((math.sqrt(5.0) / 3, 2.0 / 3))
    with pytest.raises(ValueError, match="same number of frames"):
        phys.update(pred[:, :1], truth[:, :1])
    first = PhysicalErrorAccumulator(lambda x: x, "u")
    first.update(pred[:, :1], truth[:, :1])
    with pytest.raises(ValueError, match="same number of frames"):
        first.update(pred, truth)



def test_physical_rmse_is_each_clips_root_then_averaged():
    """The root of each clip's frame error, averaged over clips: not the root of the errors summed over clips."""
    phys = PhysicalErrorAccumulator(lambda x: x, "u")
    truth = torch.zeros(2, 1, 1, 1, 1)
    phys.update(torch.tensor([0.3, 0.4]).view(2, 1, 1, 1, 1), truth)
    assert phys.result()["rmse_physical"].per_frame == pytest.approx((0.35,))

def test_frames_of_no_pixels_and_caps_of_no_decibels_are_refused():
    pred, truth = _pair(t=3)
    with pytest.raises(ValueError, match="no frames or no pixels"):
        MetricAccumulator(["mse"]).update(pred[:, :0], truth[:, :0])  # was a ZeroDivisionError in result()
    with pytest.raises(ValueError, match="no frames or no pixels"):
        mse_per_frame(pred[..., :0], truth[..., :0])
    for cap in (0.0, -5.0, float("nan")):  # -5 made every PSNR -5 dB, whatever the error
        with pytest.raises(ValueError, match="PSNR cap"):
            evaluate(pred, truth, ["psnr"], psnr_cap=cap)
        with pytest.raises(ValueError, match="PSNR cap"):
            psnr_per_frame(pred, truth, cap)
    assert evaluate(truth, truth, ["psnr"], psnr_cap=float("inf"))["psnr"].mean == float("inf")


def test_a_metric_named_twice_is_scored_once():
    pred, truth = _pair(t=3)
    twice = evaluate(pred, truth, ["mse", "psnr", "mse"])
    assert list(twice.metrics) == ["mse", "psnr"]
    assert twice["mse"].mean == pytest.approx(evaluate(pred, truth, ["mse"])["mse"].mean, rel=1e-12)  # was double
    assert list(evaluate(pred, truth, "ssim").metrics) == ["ssim"]  # one name, not the letters s, s, i, m


def test_report_to_dict_is_json_ready_and_carries_conventions():
    pred, truth = _pair()
    report = evaluate(pred, truth, ["mse", "ssim", "psnr"], psnr_cap=80.0)
    data = json.loads(json.dumps(report.to_dict()))
    assert list(data["metrics"]) == ["mse", "ssim", "psnr"]
    assert data["samples"] == 2 and data["frames"] == 3
    mse = data["metrics"]["mse"]
    assert mse["convention"] == METRICS["mse"].convention
    assert "sum over pixels" in mse["convention"] and "[0, 1]" in mse["convention"]
    assert mse["higher_is_better"] is False and data["metrics"]["ssim"]["higher_is_better"] is True
    assert len(mse["per_frame"]) == 3 and mse["mean"] == pytest.approx(np.mean(mse["per_frame"]))
    assert "80 dB" in data["metrics"]["psnr"]["convention"]
    assert [r.name for r in report] == ["mse", "ssim", "psnr"]


def test_every_metric_states_its_convention():
    assert set(DEFAULT_METRICS) == set(METRICS)
    for spec in METRICS.values():
        assert spec.convention and spec.label
    assert "mean over pixels" in METRICS["mse_pixel"].convention


def test_copy_last_frame_repeats_the_last_context_frame():
    context = torch.arange(2 * 3 * 1 * 2 * 2, dtype=torch.float32).reshape(2, 3, 1, 2, 2)
    future = copy_last_frame(context, 4)
    assert future.shape == (2, 4, 1, 2, 2)
    for t in range(4):
        assert torch.equal(future[:, t], context[:, -1])
    future[0, 0] = -1  # a real tensor, not a view of the context
    assert context.min() >= 0
    with pytest.raises(ValueError, match="horizon"):
        copy_last_frame(context, 0)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        copy_last_frame(context[0], 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    pred, truth = _pair(c=3)
    cpu = evaluate(pred, truth).to_dict()
    gpu = evaluate(pred.cuda(), truth.cuda()).to_dict()
    for name, values in cpu["metrics"].items():
        assert gpu["metrics"][name]["per_frame"] == pytest.approx(values["per_frame"], rel=1e-9)
