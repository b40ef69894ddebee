"""Forecast pictures: sizes, frame counts, missing truth, and never overwriting a file by accident."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from msrnn_zoo.visualize import forecast_frames, forecast_strip, save_gif, save_png


def _clip(t: int, c: int = 1, h: int = 8, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand(t, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_strip_size_without_labels_is_exact():
    context, truth, forecast = _clip(4), _clip(3, seed=1), _clip(3, seed=2)
    image = forecast_strip(context, truth, forecast, labels=False, gap=2, scale=2)
    # 4 columns of 20 px wide frames, 3 rows of 16 px high frames, a 2 px gap around each.
    assert image.size == (2 + 4 * (20 + 2), 2 + 3 * (16 + 2))
    assert image.mode == "L"


def test_strip_places_frames_and_upscales_with_nearest():
    context = torch.zeros(1, 1, 2, 2)
    context[0, 0, 0, 0] = 1.0
    forecast = torch.full((1, 1, 2, 2), 2.0)  # clamped to 1
    image = np.asarray(forecast_strip(context, None, forecast, labels=False, gap=1, scale=3))
    assert image.shape == (1 + 2 * 7, 1 + 7)
    assert (image[1:4, 1:4] == 255).all() and (image[1:4, 4:7] == 0).all() and (image[4:7, 1:7] == 0).all()
    assert (image[8:14, 1:7] == 255).all()


def test_strip_with_labels_is_wider_and_rgb_for_three_channels():
    context, truth, forecast = _clip(2, c=3), _clip(2, c=3, seed=1), _clip(2, c=3, seed=2)
    plain = forecast_strip(context, truth, forecast, labels=False)
    labelled = forecast_strip(context, truth, forecast)
    assert labelled.mode == "RGB"
    assert labelled.width > plain.width and labelled.height >= plain.height


def test_strip_reduces_other_channel_counts_to_grey():
    clip = torch.zeros(1, 2, 4, 4)
    clip[:, 1] = 1.0
    mean = np.asarray(forecast_strip(clip, None, clip, labels=False, gap=0))
    first = np.asarray(forecast_strip(clip, None, clip, labels=False, gap=0, channel_reduce="first"))
    assert (mean == 128).all() and (first == 0).all()


def test_truth_none_drops_its_row():
    context, forecast = _clip(3), _clip(2, seed=2)
    with_truth = forecast_strip(context, _clip(2, seed=1), forecast, labels=False)
    without = forecast_strip(context, None, forecast, labels=False)
    assert without.width == with_truth.width and without.height == with_truth.height - (8 + 2)


def test_save_png_writes_the_strip(tmp_path):
    context, truth, forecast = _clip(4), _clip(3, seed=1), _clip(3, seed=2)
    path = save_png(tmp_path / "nested" / "dir" / "strip.png", context, truth, forecast, scale=2)
    expected = forecast_strip(context, truth, forecast, scale=2)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == expected.size
        assert np.array_equal(np.asarray(image), np.asarray(expected))
    assert [p.name for p in path.parent.iterdir()] == ["strip.png"]  # no temporary file left behind


def test_save_gif_has_one_frame_per_step(tmp_path):
    context, truth, forecast = _clip(4), _clip(3, seed=1), _clip(3, seed=2)
    path = save_gif(tmp_path / "anim.gif", context, truth, forecast, duration=120, scale=2)
    frames = forecast_frames(context, truth, forecast, scale=2)
    assert len(frames) == 7
    with Image.open(path) as image:
        assert image.format == "GIF"
        assert image.n_frames == 7
        assert image.size == frames[0].size
        assert image.info["loop"] == 0 and image.info["duration"] == 120


def test_gif_panels_without_labels():
    context, truth, forecast = _clip(2), _clip(2, seed=1), _clip(2, seed=2)
    frames = forecast_frames(context, truth, forecast, labels=False, gap=1, scale=1)
    assert frames[0].size == (1 + 3 * (10 + 1), 1 + 8 + 1)
    first = np.asarray(frames[0])
    step = np.asarray(frames[2])
    assert np.array_equal(first[1:9, 1:11], first[1:9, 12:22])  # during the context truth == input
    assert (first[1:9, 23:33] == first[1, 23]).all()  # and the forecast panel is blank
    expected = np.rint(forecast[0, 0].numpy() * 255).astype(np.uint8)
    assert np.array_equal(step[1:9, 23:33], expected)
    no_truth = forecast_frames(context, None, forecast, labels=False, gap=1)
    assert no_truth[0].size == (1 + 2 * (10 + 1), 10)


def test_gif_without_truth(tmp_path):
    path = save_gif(tmp_path / "anim.gif", _clip(3, c=3), None, _clip(5, c=3, seed=2))
    with Image.open(path) as image:
        assert image.n_frames == 8


@pytest.mark.parametrize("save", [save_png, save_gif])
def test_refuses_to_overwrite_unless_told(tmp_path, save):
    path = tmp_path / "out.bin"
    path.write_bytes(b"keep me")
    context, forecast = _clip(2), _clip(2, seed=2)
    for overwrite in (False, True):  # overwrite: ours only, so it is not offered for another file
        with pytest.raises(FileExistsError, match="not a picture that msrnn-zoo wrote") as refused:
            save(path, context, None, forecast, overwrite=overwrite)
        assert "overwrite=True" not in str(refused.value)
    assert path.read_bytes() == b"keep me"
    ours = tmp_path / "ours.bin"
    save(ours, context, None, forecast)
    first = ours.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save(ours, forecast, None, context)
    save(ours, forecast, None, context, overwrite=True)
    assert ours.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.bin", "out.bin"]


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"frames\[0\]"):
        forecast_strip(torch.rand(1, 2, 1, 8, 8), None, torch.rand(1, 2, 1, 8, 8))
    with pytest.raises(ValueError, match="share"):
        forecast_strip(_clip(2), None, _clip(2, h=9))
    with pytest.raises(ValueError, match="same number of frames"):
        forecast_strip(_clip(2), _clip(3), _clip(2))
    with pytest.raises(ValueError, match="scale"):
        forecast_strip(_clip(2), None, _clip(2), scale=0)


def test_accepts_numpy_clips():
    image = forecast_strip(_clip(2).numpy(), None, _clip(2, seed=1).numpy(), labels=False, gap=0)
    assert image.size == (20, 16)


def test_card_numbers_the_frames_of_frames_all_from_2_as_evaluate_does():
    from msrnn_zoo.card import metric_panels, per_frame_heading, per_frame_table
    from msrnn_zoo.metrics import evaluate

    truth = torch.rand(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    report = evaluate(truth * 0.5, truth).to_dict()
    for frames, first, heading in (("future", 1, "Per forecast frame:"), ("all", 2, "from frame 2")):
        metrics = {"frames": frames, "forecasters": ["model"], "model": report}
        rows = per_frame_table(metrics).splitlines()[2:]
        assert [row.split("|")[1].strip() for row in rows] == [str(first + t) for t in range(3)]
        assert heading in per_frame_heading(metrics)
        # all: the clip's frames 2..4, input reconstructions included, were labelled forecast frames 1..3
        assert {(panel.first_frame, panel.axis == "forecast frame") for panel in metric_panels(metrics)} == {
            (first, frames == "future")}
