"""The bottom layer's convolutions absorb the 1x1 embedding (EmbeddedFrame): the same numbers, less work and memory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import msrnn_zoo
from msrnn_zoo.cell import EmbeddedFrame, JointConv2d, joint_conv2d
from msrnn_zoo.profile import saved_bytes


def embedding(channels: int, hidden: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(channels, hidden, 1, bias=bias).double()


@pytest.mark.parametrize("kernel, padding", [(1, 0), (3, 1), (5, 2), (3, (1, 0))])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_a_convolution_of_the_embedding_absorbs_it_with_every_gradient(kernel, padding, channels, bias):
    """Zero padding outside the image is what makes the bias a convolution of ones: the borders are checked too."""
    torch.manual_seed(0)
    embed, conv = embedding(channels, 4, bias), nn.Conv2d(4 + 3, 6, kernel, padding=padding).double()
    frame = torch.rand(2, channels, 7, 8, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True)
    ours = joint_conv2d(conv, EmbeddedFrame(frame, embed.weight, embed.bias), h)
    theirs = conv(torch.cat([embed(frame), h], dim=1))
    torch.testing.assert_close(ours, theirs)
    weight = torch.randn_like(ours)
    wrt = [frame, h, conv.weight, conv.bias, *embed.parameters()]
    for got, want in zip(torch.autograd.grad((ours * weight).sum(), wrt),
                         torch.autograd.grad((theirs * weight).sum(), wrt)):
        torch.testing.assert_close(got, want)
    with torch.no_grad():
        torch.testing.assert_close(joint_conv2d(conv, EmbeddedFrame(frame, embed.weight, embed.bias), h), theirs)


def test_a_channels_last_weight_is_absorbed_into_a_channels_last_weight():
    """A channels-last model's convolutions read channels-last weights; the combined weight, made once per clip,
    keeps that layout, so the steps that reuse it do not each convert it. The numbers are the same."""
    torch.manual_seed(0)
    embed, conv = embedding(1, 4), nn.Conv2d(4 + 3, 6, 3, padding=1).double()
    frame = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    h = torch.randn(2, 3, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    plain = joint_conv2d(conv, EmbeddedFrame(frame, embed.weight, embed.bias, absorbed={}), h)
    grads = torch.autograd.grad(plain.square().sum(), [conv.weight, *embed.parameters()])
    conv = conv.to(memory_format=torch.channels_last)
    absorbed: dict = {}
    ours = joint_conv2d(conv, EmbeddedFrame(frame, embed.weight, embed.bias, absorbed=absorbed), h)
    (combined,) = [t for t in absorbed.values() if isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[0] == 6]
    assert combined.is_contiguous(memory_format=torch.channels_last) and not combined.is_contiguous()
    torch.testing.assert_close(ours, plain)
    for got, want in zip(torch.autograd.grad(ours.square().sum(), [conv.weight, *embed.parameters()]), grads):
        torch.testing.assert_close(got, want)


def test_joint_conv2d_absorbs_it_alone_and_in_any_position():
    torch.manual_seed(0)
    embed, conv = embedding(1, 4), nn.Conv2d(4 + 3 + 4, 5, 3, padding=1).double()
    frame, h = torch.rand(1, 1, 6, 6, dtype=torch.float64), torch.randn(1, 3, 6, 6, dtype=torch.float64)
    e = embed(frame)
    torch.testing.assert_close(joint_conv2d(conv, h[:, :0].new_zeros(1, 0, 6, 6), EmbeddedFrame(frame, embed.weight,
                               embed.bias), h, EmbeddedFrame(frame, embed.weight, embed.bias)),
                               conv(torch.cat([e, h, e], dim=1)))
    single = nn.Conv2d(4, 5, 3, padding=1).double()  # TrajGRU's W_x * X_t
    torch.testing.assert_close(joint_conv2d(single, EmbeddedFrame(frame, embed.weight, embed.bias)), single(e))


def test_joint_conv2d_and_its_split_form_materialize_what_they_cannot_absorb():
    torch.manual_seed(0)
    embed, frame = embedding(1, 4), torch.rand(1, 1, 8, 8, dtype=torch.float64)
    h = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    for conv in (nn.Conv2d(7, 4, 3, stride=2), nn.Conv2d(7, 4, 3, padding=1, padding_mode="reflect")):
        conv = conv.double()
        torch.testing.assert_close(joint_conv2d(conv, EmbeddedFrame(frame, embed.weight, embed.bias), h),
                                   conv(torch.cat([embed(frame), h], dim=1)))
    joint = JointConv2d({"conv_x": 4, "conv_h": 3}, 6, 3).double()
    expected = joint(embed(frame), h)
    torch.testing.assert_close(joint(EmbeddedFrame(frame, embed.weight, embed.bias), h), expected)
    joint.split = True
    torch.testing.assert_close(joint(EmbeddedFrame(frame, embed.weight, embed.bias), h), expected)


def test_a_wrong_width_or_geometry_is_an_error_that_says_so():
    embed, frame = embedding(1, 4), torch.rand(1, 1, 6, 6, dtype=torch.float64)
    conv = nn.Conv2d(5, 2, 3, padding=1).double()  # reads 5 channels; the embedding has 4, h 3
    with pytest.raises(ValueError, match="7 channels together but the convolution reads 5"):
        joint_conv2d(conv, EmbeddedFrame(frame, embed.weight, embed.bias), torch.zeros(1, 3, 6, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) frame and a \(hidden, C, 1, 1\) weight"):
        EmbeddedFrame(frame[0], embed.weight, embed.bias)
    with pytest.raises(ValueError, match="hidden, C, 1, 1"):
        EmbeddedFrame(torch.rand(1, 2, 6, 6), embed.weight, embed.bias)


def test_the_states_keep_their_layout():
    """A 1-channel frame is both NCHW and NHWC by its strides; the concatenation must still come out NHWC."""
    torch.manual_seed(0)
    embed, joint = embedding(1, 4).float(), JointConv2d({"conv_x": 4, "conv_h": 3}, 6, 3)
    frame = torch.rand(2, 5, 1, 6, 6)[:, 2]  # a view into a clip, as the network takes it
    h = torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = joint(EmbeddedFrame(frame, embed.weight, embed.bias, torch.channels_last), h)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, joint(embed(frame), h))


def test_under_autocast_the_weights_are_combined_in_float32():
    torch.manual_seed(0)
    embed, joint = embedding(1, 4).float(), JointConv2d({"conv_x": 4, "conv_h": 3}, 6, 3)
    frame, h = torch.rand(2, 1, 6, 6), torch.randn(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = joint(EmbeddedFrame(frame, embed.weight, embed.bias), h)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert embed.weight.grad.dtype == torch.float32 and joint.weight.grad.dtype == torch.float32
    torch.testing.assert_close(out.float(), joint(embed(frame), h), rtol=0.05, atol=0.05)


def test_the_network_hands_the_bottom_layer_an_embedded_frame_only_where_the_cell_allows_it():
    seen = {}
    for name in ("ms-convlstm", "ms-motionrnn", "ms-preciplstm"):
        model = msrnn_zoo.create(name, hidden_channels=4)
        model.cells[0].register_forward_pre_hook(lambda m, args, n=name: seen.__setitem__(n, type(args[0])))
        model(torch.rand(1, 2, 1, 16, 16), horizon=1)
    assert seen == {"ms-convlstm": EmbeddedFrame, "ms-motionrnn": torch.Tensor, "ms-preciplstm": torch.Tensor}
    model = msrnn_zoo.create("ms-convlstm", hidden_channels=4)
    model.absorb_embedding = False
    model.cells[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("off", type(args[0])))
    model(torch.rand(1, 2, 1, 16, 16), horizon=1)
    assert seen["off"] is torch.Tensor


def test_training_keeps_no_embedding_for_the_backward():
    """Each step kept its (B, hidden, H, W) embedding for the backward pass; now it keeps a copy of the frame.

    What the clip keeps once (the combined weights, the ones channel) does not grow with its length, so two
    lengths tell the per-step saving apart exactly.
    """
    torch.manual_seed(0)
    model = msrnn_zoo.create("convlstm", hidden_channels=8)
    hidden, frame_bytes = 8, 16 * 16 * 4

    def kept_difference(t: int) -> int:
        frames, teacher = torch.rand(1, t, 1, 16, 16), torch.ones(1, t - 1)
        model.absorb_embedding = True
        absorbed = saved_bytes(lambda: model.forward_train(frames, teacher))
        model.absorb_embedding = False
        return saved_bytes(lambda: model.forward_train(frames, teacher)) - absorbed

    # at least the embedding per step (on the CPU the 1x1 convolution of the frame also keeps its own buffer)
    assert kept_difference(7) - kept_difference(4) >= 3 * hidden * frame_bytes


@pytest.mark.parametrize("bias", [True, False])
def test_the_combined_weight_has_the_gradients_of_its_products(bias):
    from msrnn_zoo.embedded_frame import _AbsorbedWeight
    torch.manual_seed(0)
    weight = torch.randn(3, 4 + 2 + 4, 3, 3, dtype=torch.float64, requires_grad=True)
    embed_weight = torch.randn(4, 2, 1, 1, dtype=torch.float64, requires_grad=True)
    embed_bias = torch.randn(4, dtype=torch.float64, requires_grad=True) if bias else None
    spans = ((0, 4, True), (4, 2, False), (6, 4, True))
    inputs = (weight, embed_weight, embed_bias) if bias else (weight, embed_weight)
    assert torch.autograd.gradcheck(lambda w, e, b=None: _AbsorbedWeight.apply(w, e, b, spans), inputs)


def test_a_weight_changed_before_the_backward_pass_is_refused():
    torch.manual_seed(0)
    embed, joint = embedding(1, 4).float(), JointConv2d({"conv_x": 4, "conv_h": 3}, 6, 3)
    out = joint(EmbeddedFrame(torch.rand(1, 1, 5, 5), embed.weight, embed.bias), torch.randn(1, 3, 5, 5))
    with torch.no_grad():
        embed.weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place before the backward pass"):
        out.sum().backward()


def test_the_steps_of_a_clip_share_one_combined_weight():
    """The products are taken once per clip: the weight the first step made is the one every step reads."""
    torch.manual_seed(0)
    model = msrnn_zoo.create("ms-predrnn", hidden_channels=4)
    absorbed: dict = {}
    state = model.init_state(1, 16, 16)
    for _ in range(3):
        _, state, _ = model._step(torch.rand(1, 1, 16, 16), state, absorbed=absorbed)
    weights = [v for v in absorbed.values() if v.dim() == 4 and v.shape[1] > 1]
    assert len(weights) == 2  # PredRNN's bottom layer convolves its input for C and for M
    assert {w.shape[1] for w in weights} == {1 + 1 + 4}  # frame, ones, the state
