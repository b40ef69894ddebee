"""The first step's convolutions leave out the states, which are zero then: the same numbers, fewer operations."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import msrnn_zoo
from msrnn_zoo import testing
from msrnn_zoo.cell import JointConv2d, is_known_zero, joint_conv2d, mark_zero, unmark_zero, zero_like_source, zeros

HIDDEN, SIZE, KERNEL = 8, 12, 3


def first_step_flops(model: msrnn_zoo.Forecaster, state: msrnn_zoo.network.ForecastState | None = None) -> int:
    frame = torch.rand(2, 1, SIZE, SIZE)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.step(frame, state)
    return counter.get_total_flops()


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_first_step_of_convlstm_skips_exactly_the_hidden_states_share(channels_last):
    """ConvLSTM's gate convolution reads ``[X_t, H_{t-1}]``; at t = 0 its ``H`` part (4 hidden x hidden x k x k
    multiply-adds per pixel and layer) is all that is left out, in either layout of the CPU's states."""
    model = msrnn_zoo.create("convlstm", hidden_channels=HIDDEN, kernel_size=KERNEL)
    model.cpu_channels_last = channels_last
    skipped = first_step_flops(model)
    model.skip_zero_states = False
    full = first_step_flops(model)
    per_layer = 2 * 2 * SIZE * SIZE * (4 * HIDDEN) * HIDDEN * KERNEL * KERNEL  # 2 FLOPs per multiply-add, batch 2
    assert full - skipped == model.config.num_layers * per_layer


def test_a_state_written_in_place_is_convolved_again():
    """The mark lasts only while the tensor is unchanged: a state the user fills is not taken for zeros."""
    torch.manual_seed(0)
    model = msrnn_zoo.create("convlstm", hidden_channels=HIDDEN)
    frame = torch.rand(2, 1, SIZE, SIZE)
    state = model.init_state(2, SIZE, SIZE)
    for layer in state.layers:
        assert all(is_known_zero(t) for t in layer)
        layer[0].fill_(0.5)
        assert not is_known_zero(layer[0]) and is_known_zero(layer[1])
    reference = model.init_state(2, SIZE, SIZE).map(unmark_zero)
    for layer in reference.layers:
        layer[0].fill_(0.5)
    with torch.no_grad():
        ours, _ = model.step(frame, state)
        model.skip_zero_states = False
        expected, _ = model.step(frame, reference)
    torch.testing.assert_close(ours, expected)
    assert first_step_flops(model, model.init_state(2, SIZE, SIZE).map(lambda t: t.add_(1))) == first_step_flops(
        model)


def test_the_states_after_the_first_step_and_unmarked_ones_are_convolved():
    model = msrnn_zoo.create("convlstm", hidden_channels=HIDDEN)
    _, state = model.step(torch.rand(2, 1, SIZE, SIZE))
    assert not any(is_known_zero(t) for layer in state.layers for t in layer)
    model.skip_zero_states = False
    assert not any(is_known_zero(t) for layer in model.init_state(2, SIZE, SIZE).layers for t in layer)


@pytest.mark.parametrize("name", ["convlstm", "ms-mim", "ms-predrnn-pp", "ms-preciplstm"])
def test_forecasts_are_the_same_with_and_without_skipping(name):
    """Also under ``torch.inference_mode``, whose tensors carry no version counter and so are never marked."""
    torch.manual_seed(0)
    model = msrnn_zoo.create(name, hidden_channels=HIDDEN).eval()
    frames = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        ours = model(frames, horizon=2)
    with torch.inference_mode():
        inferred = model(frames, horizon=2)
    model.skip_zero_states = False
    with torch.no_grad():
        expected = model(frames, horizon=2)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(inferred, expected)


def test_every_builtin_cell_starts_from_marked_zeros():
    """What the speed-up rests on: each cell's ``init_state`` makes its zeros with the core's helpers."""
    for name in ("convlstm", "trajgru", "predrnn", "predrnn-pp", "mim", "motionrnn", "predrnn-v2", "preciplstm"):
        model = msrnn_zoo.create(f"ms-{name}", hidden_channels=HIDDEN)
        state = model.init_state(1, 16, 16)
        tensors = [t for layer in state.layers for t in layer]
        tensors += [state.memory] if state.memory is not None else []
        tensors += state.outputs or []
        assert all(is_known_zero(t) for t in tensors), name


def test_a_joint_convolution_leaves_out_marked_inputs_with_their_gradients():
    torch.manual_seed(0)
    joint = JointConv2d({"conv_x": 3, "conv_h": 4, "conv_c": 2}, 5, 3).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    h = mark_zero(torch.zeros(2, 4, 6, 6, dtype=torch.float64))
    ours = joint(x, h, c)
    expected = nn.functional.conv2d(torch.cat([x, torch.zeros_like(h), c], 1), joint.weight, joint.bias, padding=1)
    torch.testing.assert_close(ours, expected)
    weight = torch.randn_like(ours)
    wrt = [x, c, joint.weight, joint.bias]
    for got, want in zip(torch.autograd.grad((ours * weight).sum(), wrt),
                         torch.autograd.grad((expected * weight).sum(), wrt)):
        torch.testing.assert_close(got, want)
    conv = nn.Conv2d(4, 5, 1).double()  # all inputs zero: the convolution runs as it is (its bias is the answer)
    torch.testing.assert_close(joint_conv2d(conv, h), conv(h))


def test_marks_follow_maps_that_keep_zeros_only_from_a_marked_source():
    z = zeros(1, 2, 4, 4, None, None)
    assert is_known_zero(zero_like_source(z, nn.functional.max_pool2d(z, 2)))
    assert not is_known_zero(zero_like_source(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)))
    assert not is_known_zero(torch.zeros(3)) and not is_known_zero(None)


def test_the_conformance_kit_holds_gradients_equal_both_ways():
    testing.check_zero_states("ms-predrnn-v2")


def test_flops_per_frame_counts_a_step_after_the_first():
    """``msrnn-zoo info`` and the cards report a typical step, not the cheaper first one."""
    from msrnn_zoo.profile import flops_per_frame

    model = msrnn_zoo.create("ms-predrnn", hidden_channels=HIDDEN)
    _, state = model.step(torch.rand(1, 1, 16, 16))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.step(torch.rand(1, 1, 16, 16), state)
    assert flops_per_frame(model, 16, 16) == counter.get_total_flops() > first_step_flops_at(model, 16)


def first_step_flops_at(model: msrnn_zoo.Forecaster, size: int) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.step(torch.rand(1, 1, size, size))
    return counter.get_total_flops()


def test_a_copy_is_not_taken_for_zeros_and_marks_go_with_their_tensors():
    """The mark is the tensor's own: a deep copy or a saved and loaded copy of a state written since is convolved."""
    import copy
    import gc
    import io

    from msrnn_zoo import zero_states

    state = mark_zero(torch.zeros(2, 3))
    assert is_known_zero(state) and not is_known_zero(copy.deepcopy(state))
    state.add_(1)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert not is_known_zero(copy.deepcopy(state)) and not is_known_zero(torch.load(buffer))
    gc.collect()  # marks of earlier tests' garbage go first, so that the count below is this tensor's alone
    before = len(zero_states._KNOWN_ZEROS)
    del state
    gc.collect()
    assert len(zero_states._KNOWN_ZEROS) == before - 1
