"""FLOPs are counted on a twin of the model on the meta device: the counts of the real model, at any size."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import msrnn_zoo
from msrnn_zoo.cell import unmark_zero
from msrnn_zoo.profile import flops_per_frame, flops_per_frame_by_op


@pytest.mark.parametrize("name", msrnn_zoo.list_models())
def test_the_meta_twin_counts_what_the_model_computes(name):
    model = msrnn_zoo.create(name, hidden_channels=8)
    state = model.init_state(2, 16, 16).map(unmark_zero)  # a step after the first, as flops_per_frame counts
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.step(torch.rand(2, 1, 16, 16), state)
    assert flops_per_frame(model, 16, 16, batch=2) == counter.get_total_flops() // 2
    by_op = flops_per_frame_by_op(model, 16, 16, batch=2)
    assert by_op == {str(op).removeprefix("aten."): n // 2 for op, n in counter.get_flop_counts()["Global"].items()}
    assert list(by_op.values()) == sorted(by_op.values(), reverse=True)  # largest first


def test_a_radar_sized_frame_is_counted_without_memory_for_it():
    """8192x8192 at 64 channels is 17 GB per state: counted on the meta device, it allocates nothing.

    The count grows with the pixels, plus a constant (the bottom layer's weights combined with the embedding), so
    differences of counts scale exactly with differences of areas.
    """
    model = msrnn_zoo.create("ms-convlstm", hidden_channels=64)
    big = flops_per_frame(model, 8192, 8192) - flops_per_frame(model, 4096, 4096)
    small = flops_per_frame(model, 128, 128) - flops_per_frame(model, 64, 64)
    assert big == small * (8192 ** 2 - 4096 ** 2) // (128 ** 2 - 64 ** 2)


def test_the_count_follows_the_models_options_and_refuses_sizes_it_cannot_run():
    model = msrnn_zoo.create("convlstm", hidden_channels=8)
    absorbed = flops_per_frame(model, 16, 16)
    model.absorb_embedding = False
    assert flops_per_frame(model, 16, 16) > absorbed
    with pytest.raises(ValueError, match="divisible by 4"):
        flops_per_frame(msrnn_zoo.create("ms-convlstm", hidden_channels=8), 6, 6)


def test_preciplstms_convolutions_alone_are_more_than_twice_predrnns():
    """Why its step cannot take under 2x PredRNN's at equal speed per FLOP (docs/speed.md): its four memories'
    gates, before any attention (the products of ``bmm``)."""
    precip = flops_per_frame_by_op(msrnn_zoo.create("preciplstm", hidden_channels=64), 64, 64)
    predrnn = flops_per_frame_by_op(msrnn_zoo.create("predrnn", hidden_channels=64), 64, 64)
    assert precip["convolution"] > 2 * predrnn["convolution"] and precip["bmm"] > 0
