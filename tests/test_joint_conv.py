"""JointConv2d: a sum of convolutions of several inputs as one convolution, loading separately stored weights."""

import collections
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from msrnn_zoo import joint_conv, recompute
from msrnn_zoo.cell import CellOutput, JointConv2d, RecurrentCell, fold_joint_convs, joint_conv2d, zeros
from msrnn_zoo.joint_conv import _JointConv
from msrnn_zoo.profile import saved_bytes, saved_bytes_by_op


def test_is_the_sum_of_the_separate_convolutions():
    torch.manual_seed(0)
    joint = JointConv2d({"conv_x": 3, "conv_h": 5}, 8, 3)
    x, h = torch.randn(2, 3, 6, 7), torch.randn(2, 5, 6, 7)
    w_x, w_h = joint.weight[:, :3], joint.weight[:, 3:]
    expected = F.conv2d(x, w_x, padding=1) + F.conv2d(h, w_h, padding=1) + joint.bias[:, None, None]
    torch.testing.assert_close(joint(x, h), expected)
    torch.testing.assert_close(joint(torch.cat([x, h], 1)), expected)  # the concatenation, when one has it
    expected = expected.detach()
    with torch.no_grad():  # forecasting: nothing is kept for a backward, one plain convolution of the concatenation
        torch.testing.assert_close(joint(x, h), expected)
    joint.requires_grad_(False)  # frozen weights, inputs without gradients: the same
    torch.testing.assert_close(joint(x, h), expected)
    joint.requires_grad_(True)
    joint.split = True  # the part-by-part sum that the benchmark compares with
    torch.testing.assert_close(joint(x, h), expected)
    torch.testing.assert_close(joint(torch.cat([x, h], 1)), expected)
    with pytest.raises(ValueError, match="sums 2 inputs"):
        joint(x)


def test_initialised_as_the_separate_convolutions_would_be():
    torch.manual_seed(0)
    joint = JointConv2d({"a": 2, "b": 4}, 6, 3)
    torch.manual_seed(0)
    a, b = nn.Conv2d(2, 6, 3), nn.Conv2d(4, 6, 3)
    assert torch.equal(joint.weight, torch.cat([a.weight, b.weight], 1))
    assert torch.equal(joint.bias, a.bias + b.bias)


class TwoGateCell(RecurrentCell):
    """A cell whose gates sum two convolutions, with a nested module holding another joint convolution."""

    def __init__(self, in_channels, hidden_channels, kernel_size=3, *, layer_index=0, num_layers=1):
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        self.conv_xh = JointConv2d({"conv_x": in_channels, "conv_h": hidden_channels}, hidden_channels, kernel_size)
        self.inner = nn.Module()
        self.inner.conv_ab = JointConv2d({"conv_a": hidden_channels, "conv_b": hidden_channels}, hidden_channels, 1)

    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return (zeros(batch, self.hidden_channels, height, width, device, dtype),)

    def forward(self, x, state, memory=None, lower_previous=None):
        h = torch.tanh(self.conv_xh(x, state[0]))
        return CellOutput(self.inner.conv_ab(h, state[0]), (h,))


def separate_state(cell):
    """The state dict the cell would have with separate convolutions (as older checkpoints hold it)."""
    state = {}
    for joint_name, prefix in ((cell.conv_xh, ""), (cell.inner.conv_ab, "inner.")):
        start = 0
        for part, channels in joint_name.parts.items():
            state[f"{prefix}{part}.weight"] = joint_name.weight[:, start:start + channels].detach().clone()
            state[f"{prefix}{part}.bias"] = joint_name.bias.detach() / len(joint_name.parts)
            start += channels
    return state


def test_separately_stored_weights_load_into_the_joint_convolution():
    torch.manual_seed(0)
    cell = TwoGateCell(2, 4)
    again = TwoGateCell(2, 4)
    again.load_state_dict(separate_state(cell), strict=True)
    for key, value in cell.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)
    # inside a bigger module (a network's cells): the keys carry the cell's prefix
    holder, copy = nn.ModuleList([TwoGateCell(2, 4)]), nn.ModuleList([TwoGateCell(2, 4)])
    copy.load_state_dict({f"0.{k}": v for k, v in separate_state(holder[0]).items()}, strict=True)
    torch.testing.assert_close(copy[0].inner.conv_ab.weight, holder[0].inner.conv_ab.weight)


def test_fold_reports_where_each_joint_weight_came_from_and_rejects_half_a_pair():
    cell = TwoGateCell(2, 4)
    state = {f"cells.0.{k}": v for k, v in separate_state(cell).items()}
    folded = fold_joint_convs(cell, state, "cells.0.")
    assert folded["cells.0.conv_xh.weight"] == ["cells.0.conv_x.weight", "cells.0.conv_h.weight"]
    assert folded["cells.0.inner.conv_ab.bias"] == ["cells.0.inner.conv_a.bias", "cells.0.inner.conv_b.bias"]
    assert set(state) == {f"cells.0.{k}" for k in cell.state_dict()}
    half = separate_state(cell)
    del half["conv_h.weight"]
    with pytest.raises(ValueError, match=r"also needs conv_h\.weight"):
        TwoGateCell(2, 4).load_state_dict(half)
    both = {**cell.state_dict(), "conv_x.weight": half["conv_x.weight"], "conv_h.weight": half["conv_x.weight"]}
    with pytest.raises(ValueError, match="both conv_xh.weight and its parts"):
        TwoGateCell(2, 4).load_state_dict(both)


def test_gradients_are_those_of_the_separate_convolutions():
    """The joint convolution keeps its inputs, not their concatenation, and writes its own backward: checked."""
    torch.manual_seed(0)
    weight = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, b, x, h: _JointConv.apply(w, b, 1, x, h), (weight, bias, x, h))
    joint = JointConv2d({"conv_x": 2, "conv_h": 3}, 4, 3).double()
    only_h = torch.autograd.grad(joint(x.detach(), h).sum(), h)[0]  # an input that needs no gradient
    torch.testing.assert_close(only_h, torch.autograd.grad(joint(x, h).sum(), h)[0])


def test_under_autocast_the_backward_runs_in_the_autocast_dtype():
    torch.manual_seed(0)
    joint = JointConv2d({"conv_x": 2, "conv_h": 3}, 4, 3)
    x, h = torch.randn(1, 2, 5, 5, requires_grad=True), torch.randn(1, 3, 5, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = joint(x, h)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and joint.weight.grad.dtype == torch.float32
    reference = JointConv2d({"conv_x": 2, "conv_h": 3}, 4, 3)
    reference.load_state_dict(joint.state_dict())
    reference(x.detach(), h.detach()).sum().backward()
    torch.testing.assert_close(joint.weight.grad, reference.weight.grad, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("dtypes", [("bf16", "bf16", "f32"), ("f32", "bf16"), ("f32", "f32"), ("bf16", "f32", "f32")])
def test_under_autocast_inputs_of_mixed_dtypes_are_cast_once_to_the_same_numbers(dtypes):
    """A gate over a half-precision hidden state and a float32 memory: the parts are cast straight into the
    concatenation (two parts, or two of three to cast) or cast alone, never the half-precision ones widened and the
    whole concatenation narrowed again; values and gradients are the bits of the plain convolution of the
    concatenation under autocast."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Casts(TorchDispatchMode):
        """The kernels that make the convolution's input and weights: casts and concatenations (one copy per part
        where the parts' dtypes are not the result's, as a GPU's ``cat`` does then)."""

        count = 0
        parts_cast_apart = 0  # casts of a part on its own: a half-precision copy the concatenation reads again

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.__name__.split(".")[0]
            if name == "cat":
                Casts.count += len(args[0]) if any(t.dtype != out.dtype for t in args[0]) else 1
            elif name == "_to_copy":
                Casts.count += 1
                Casts.parts_cast_apart += tuple(args[0].shape) == (2, 2, 6, 6)
            return out

    torch.manual_seed(0)
    conv = nn.Conv2d(2 * len(dtypes), 4, 3, padding=1)
    kinds = {"bf16": torch.bfloat16, "f32": torch.float32}
    parts = [torch.randn(2, 2, 6, 6).to(kinds[d]).requires_grad_() for d in dtypes]
    results = []
    for joint in (True, False):
        conv.zero_grad()
        for p in parts:
            p.grad = None
        Casts.count = Casts.parts_cast_apart = 0
        with Casts(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = joint_conv2d(conv, *parts) if joint else conv(torch.cat(parts, 1))
        forward_casts = Casts.count
        if joint:
            cast_apart = Casts.parts_cast_apart
        out.float().square().sum().backward()
        results.append((out, conv.weight.grad.clone(), [p.grad for p in parts], forward_casts))
    (out, weight_grad, grads, casts), (expected, expected_weight_grad, expected_grads, plain_casts) = results
    assert torch.equal(out, expected)
    assert torch.equal(weight_grad, expected_weight_grad)
    for got, want in zip(grads, expected_grads):
        assert torch.equal(got, want)
    count, wide, narrow = len(dtypes), dtypes.count("f32"), dtypes.count("bf16")
    # the weight and bias are cast by autocast in both (2); then the parts: one copy each into the concatenation
    # where that is no more kernels than casting the float32 ones, or the whole concatenation, on their own
    assert casts == 2 + min(count, wide + 1, (count if narrow else 1) + 1)
    assert casts == 2 + {("bf16", "bf16", "f32"): 2, ("f32", "bf16"): 2, ("f32", "f32"): 2,
                         ("bf16", "f32", "f32"): 3}[dtypes]
    assert plain_casts == 2 + narrow + 2  # the narrow parts widened, the concatenation, and that narrowed again
    # and the fewest bytes: a part is cast on its own only where copying every part would take more operations
    assert cast_apart == (1 if dtypes == ("bf16", "bf16", "f32") else 0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # a forecast's convolutions: the same bits
        assert torch.equal(joint_conv2d(conv, *parts), conv(torch.cat(parts, 1)))


def test_under_autocast_the_bias_gradient_is_summed_in_float32_and_the_parts_gradients_cast_once():
    """The bias's gradient: the float32 sum of the half-precision gradient, not that sum rounded to bf16 and widened
    again (one reduction on a GPU, where cuDNN's convolution leaves the bias's gradient to a separate sum). Two
    float32 parts get their gradients from one cast before the split, the same numbers as one cast each."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, 3, padding=1)
    parts = [torch.randn(2, 3, 6, 6, requires_grad=True) for _ in range(2)]
    weights = torch.randn(2, 4, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = joint_conv2d(conv, *parts)
    (out.float() * weights).sum().backward()
    upstream = weights.bfloat16()  # the gradient the convolution's output receives
    assert torch.equal(conv.bias.grad, upstream.float().sum((0, 2, 3)))
    conv.weight.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the same convolution of the concatenation, plain
        expected = torch.autograd.grad((conv(torch.cat(parts, 1)).float() * weights).sum(), parts)
    for part, grad in zip(parts, expected):
        assert part.grad.dtype == torch.float32 and torch.equal(part.grad, grad)


def test_a_saved_model_with_separate_convolutions_loads(tmp_path):
    """Weights written before the cells joined their convolutions load through save_pretrained's reader."""
    from safetensors.torch import save_file

    import msrnn_zoo

    torch.manual_seed(0)
    model = msrnn_zoo.create("ms-predrnn", hidden_channels=4)
    model.save_pretrained(tmp_path)
    old = {}
    for key, value in model.state_dict().items():
        module_path, _, param = key.rpartition(".")
        joint = model.get_submodule(module_path)
        if not isinstance(joint, JointConv2d):
            old[key] = value
            continue
        parent = module_path.rpartition(".")[0]
        start = 0
        for part, channels in joint.parts.items():
            if param == "weight":
                old[f"{parent}.{part}.weight"] = value[:, start:start + channels].contiguous()
            else:
                old[f"{parent}.{part}.bias"] = value / len(joint.parts)
            start += channels
    save_file(old, str(tmp_path / "model.safetensors"))
    again = msrnn_zoo.Forecaster.from_pretrained(tmp_path)
    frames = torch.rand(1, 3, 1, 16, 16)
    torch.testing.assert_close(again(frames, horizon=2), model(frames, horizon=2))


def nbytes(*tensors):
    return sum(t.untyped_storage().nbytes() for t in tensors)


@pytest.mark.parametrize("kernel, padding", [(1, 0), (3, 1), (3, (1, 0))])
def test_joint_conv2d_is_the_convolution_of_the_concatenation_with_its_gradients(kernel, padding):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 4, kernel, padding=padding).double()
    a = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    ours, theirs = joint_conv2d(conv, a, b), conv(torch.cat([a, b], dim=1))
    torch.testing.assert_close(ours, theirs)
    weight = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * weight).sum(), (a, b, conv.weight, conv.bias))
    expected = torch.autograd.grad((theirs * weight).sum(), (a, b, conv.weight, conv.bias))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
    with torch.no_grad():
        torch.testing.assert_close(joint_conv2d(conv, a, b), theirs.detach())
    torch.testing.assert_close(joint_conv2d(conv, torch.cat([a, b], dim=1)), theirs)  # one input: just the conv


def test_joint_conv2d_keeps_the_parts_not_their_concatenation():
    """The concatenation's bytes are what a cell saved per call before; the parts are kept instead."""
    conv = nn.Conv2d(5, 4, 3, padding=1)
    a, b = torch.randn(2, 2, 8, 8, requires_grad=True), torch.randn(2, 3, 8, 8, requires_grad=True)
    concatenated = saved_bytes_by_op(lambda: conv(torch.cat([a, b], dim=1)))
    assert concatenated == {"CatBackward0": nbytes(a, b), "leaf": nbytes(conv.weight)}
    assert saved_bytes_by_op(lambda: joint_conv2d(conv, a, b)) == {"leaf": nbytes(a, b, conv.weight)}
    # two convolutions of the same parts (an output gate and a 1x1 read-out) keep them once
    fuse = nn.Conv2d(5, 1, 1)
    both = saved_bytes(lambda: (joint_conv2d(conv, a, b), joint_conv2d(fuse, a, b)))
    assert both == nbytes(a, b, conv.weight, fuse.weight)
    # JointConv2d: called with its inputs it keeps them; called with their concatenation it keeps that
    joint = JointConv2d({"conv_a": 2, "conv_b": 3}, 4, 3)
    assert "CatBackward0" not in saved_bytes_by_op(lambda: joint(a, b))
    assert saved_bytes_by_op(lambda: joint(torch.cat([a, b], 1)))["CatBackward0"] == nbytes(a, b)


def test_joint_conv2d_leaves_other_convolutions_on_the_concatenation():
    torch.manual_seed(0)
    a, b = torch.randn(1, 2, 8, 8, requires_grad=True), torch.randn(1, 3, 8, 8, requires_grad=True)
    for conv in (nn.Conv2d(5, 4, 3, stride=2), nn.Conv2d(5, 4, 3, padding="same"),
                 nn.Conv2d(5, 4, 3, padding=1, padding_mode="reflect"), nn.Conv2d(5, 5, 3, groups=5)):
        torch.testing.assert_close(joint_conv2d(conv, a, b), conv(torch.cat([a, b], dim=1)))
    with pytest.raises(ValueError, match="at least one input"):
        joint_conv2d(nn.Conv2d(5, 4, 1))


def test_where_nothing_else_hooks_saved_tensors_autograd_convolves_and_keeps_the_parts():
    """The default path (no checkpoint, no memory count, no autocast) swaps the saved concatenation for its parts
    by hooking autograd's own convolution: what stays allocated is the output alone, and the backward is exact."""
    from msrnn_zoo.profile import retained_bytes

    torch.manual_seed(0)
    conv = nn.Conv2d(5, 4, 3, padding=1)
    a, b = torch.randn(2, 2, 8, 8, requires_grad=True), torch.randn(2, 3, 8, 8, requires_grad=True)
    assert joint_conv._own_hooks_allowed(a.device)
    out_bytes = 2 * 4 * 8 * 8 * 4
    assert retained_bytes(lambda: conv(torch.cat([a, b], dim=1))) == out_bytes + nbytes(a, b)  # plain keeps the copy
    assert retained_bytes(lambda: joint_conv2d(conv, a, b)) == out_bytes
    weight = torch.randn(2, 4, 8, 8)
    ours = torch.autograd.grad((joint_conv2d(conv, a, b) * weight).sum(), (a, b, conv.weight, conv.bias))
    plain = torch.autograd.grad((conv(torch.cat([a, b], dim=1)) * weight).sum(), (a, b, conv.weight, conv.bias))
    for got, want in zip(ours, plain):
        assert torch.equal(got, want)  # the same kernels on the same numbers
    w64, b64 = conv.weight.detach().double().requires_grad_(), conv.bias.detach().double().requires_grad_()
    a64, b64_in = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    assert torch.autograd.gradcheck(lambda w, bias, x, h: joint_conv._conv_keeping_parts(w, bias, 1, (x, h)),
                                    (w64, b64, a64, b64_in))


def test_a_convolution_that_fails_leaves_no_hooks_behind():
    """The hooks are pushed and popped by hand (no context manager): an error in the convolution must still pop
    them, or every later saved tensor of the process would go through them."""

    weight = torch.randn(4, 6, 3, 3, requires_grad=True)  # reads 6 channels, the parts have 5
    a, b = torch.randn(1, 2, 6, 6, requires_grad=True), torch.randn(1, 3, 6, 6)
    with pytest.raises(RuntimeError):
        joint_conv._conv_keeping_parts(weight, None, 1, (a, b))
    assert joint_conv._TOP_HOOKS(False) is None and joint_conv._own_hooks_allowed(a.device)


def test_an_input_changed_in_place_after_the_forward_is_refused_in_the_backward():
    conv = nn.Conv2d(5, 4, 3, padding=1)
    a, b = torch.randn(1, 2, 6, 6, requires_grad=True), torch.randn(1, 3, 6, 6)
    out = joint_conv2d(conv, a * 1, b)
    b.add_(1)  # the backward would otherwise convolve values the forward never saw
    with pytest.raises(RuntimeError, match="modified in place after the forward pass"):
        out.sum().backward()


def test_under_other_hooks_or_autocast_the_python_backward_keeps_the_parts(monkeypatch):
    """A checkpoint or a memory count hooks every saved tensor itself, and under autocast autograd would keep
    half-precision weights and sum their gradients in half precision: there the joint convolution is the
    autograd.Function, which keeps the same parts."""

    calls = []
    monkeypatch.setattr(joint_conv._JointConv, "apply", lambda *args: calls.append(1) or F.conv2d(
        torch.cat(args[3:], 1), args[0], args[1], padding=args[2]))
    conv = nn.Conv2d(5, 4, 3, padding=1)
    a, b = torch.randn(1, 2, 6, 6, requires_grad=True), torch.randn(1, 3, 6, 6)
    joint_conv2d(conv, a, b)
    assert calls == []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        joint_conv2d(conv, a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        joint_conv2d(conv, a, b)
    assert len(calls) == 2


def _registered_models():
    import msrnn_zoo

    return msrnn_zoo.list_models()


@pytest.mark.parametrize("name", _registered_models())
def test_a_training_step_is_the_same_either_way_to_the_bit(name, monkeypatch):
    """Every registered model: hooks or the Python backward, the same forecast, gradients and kept bytes."""
    from msrnn_zoo import testing
    from msrnn_zoo.profile import retained_bytes

    torch.manual_seed(0)
    model = testing.small(name, num_layers=4)
    frames, teacher = torch.rand(2, 5, 1, 8, 8), (torch.rand(2, 4) > 0.5).float()
    results = []
    for allowed in (joint_conv._own_hooks_allowed, lambda device: False):
        monkeypatch.setattr(joint_conv, "_own_hooks_allowed", allowed)
        model.zero_grad()
        prediction, aux = model.forward_train(frames, teacher)
        (prediction.square().sum() + (aux if aux is not None else 0)).backward()
        kept = retained_bytes(lambda: model.forward_train(frames, teacher))
        results.append((prediction.detach(), [p.grad.clone() for p in model.parameters()], kept))
    (p1, g1, k1), (p2, g2, k2) = results
    assert torch.equal(p1, p2) and all(torch.equal(x, y) for x, y in zip(g1, g2))
    assert k1 == k2  # the same tensors kept for the backward


def _two_gates_reading_a_difference(x, y, h, joint, recipe):
    """Two joint convolutions reading ``x - y``, made by ``recomputable`` or plainly."""
    from msrnn_zoo.cell import recomputable

    d = recomputable(torch.sub, x, y) if recipe else x - y
    return joint(d, h) + joint(d, h.flip(-1))


@pytest.mark.parametrize("hooks", [True, False], ids=["hooks", "python-backward"])
def test_an_input_made_by_recomputable_is_kept_as_its_recipe_and_recomputed_once(hooks, monkeypatch):
    from msrnn_zoo.profile import retained_bytes

    if not hooks:
        monkeypatch.setattr(joint_conv, "_own_hooks_allowed", lambda device: False)
    torch.manual_seed(0)
    joint = JointConv2d({"d": 4, "h": 4}, 8, 3)
    x, y, h = (torch.randn(2, 4, 6, 6, requires_grad=True) for _ in range(3))
    results = []
    for recipe in (False, True):
        joint.zero_grad()
        for t in (x, y, h):
            t.grad = None
        _two_gates_reading_a_difference(x, y, h, joint, recipe).square().sum().backward()
        kept = retained_bytes(lambda r=recipe: _two_gates_reading_a_difference(x, y, h, joint, r))
        results.append(([t.grad.clone() for t in (x, y, h, joint.weight, joint.bias)], kept))
    (plain, kept_plain), (remade, kept_remade) = results
    assert all(torch.equal(a, b) for a, b in zip(plain, remade))  # the same operations again: the same bits
    assert kept_plain - kept_remade == 2 * 4 * 6 * 6 * 4  # x - y is no longer kept: x and y are, anyway
    calls = []

    def counted(a, b):
        calls.append(1)
        return a - b

    d = recompute.recomputable(counted, x, y)
    recipe = recompute._RECIPES[id(d)][2]
    (joint(d, h) + joint(d, h.flip(-1))).sum().backward()
    assert len(calls) == 2  # the forward, then once for both gates' backward
    assert recipe.readers == 0 and recipe.value is None  # the rebuilt value went with the last gate's backward


def test_a_source_of_a_recipe_written_after_the_forward_is_refused_in_the_backward(monkeypatch):
    from msrnn_zoo.cell import recomputable

    joint = JointConv2d({"d": 2, "h": 2}, 4, 3)
    x, y = torch.randn(1, 2, 5, 5, requires_grad=True), torch.randn(1, 2, 5, 5)
    h = torch.randn(1, 2, 5, 5, requires_grad=True)
    out = joint(recomputable(torch.sub, x, y), h)
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="recomputed was modified in place"):
        out.sum().backward()
    monkeypatch.setattr(joint_conv, "_own_hooks_allowed", lambda device: False)  # autograd's own check there
    out = joint(recomputable(torch.sub, x, y), h)
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_a_recipe_is_noted_only_for_a_training_forward_and_forgotten_with_its_tensor():
    from msrnn_zoo.cell import recomputable

    x, y = torch.randn(1, 2, 4, 4, requires_grad=True), torch.randn(1, 2, 4, 4)
    before = len(recompute._RECIPES)
    with torch.no_grad():
        recomputable(torch.sub, x, y)
    with torch.inference_mode():
        recomputable(torch.sub, x.detach(), y)
    recomputable(torch.sub, x.detach(), y)  # nothing needs a gradient
    assert len(recompute._RECIPES) == before
    d = recomputable(torch.sub, x, y)
    assert recompute._recipe_of(d) is not None and len(recompute._RECIPES) == before + 1
    d.mul_(2.0)  # written since: kept as the tensor it now is
    assert recompute._recipe_of(d) is None
    joint = JointConv2d({"d": 2, "h": 2}, 4, 3)
    h = torch.randn(1, 2, 4, 4)
    joint(d, h).sum().backward()
    expected = torch.autograd.grad(joint((x - y) * 2.0, h).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=0)
    del d
    assert len(recompute._RECIPES) == before


def test_a_recipe_must_make_one_tensor():
    from msrnn_zoo.cell import recomputable

    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    with pytest.raises(TypeError, match="returns one tensor.*returned tuple"):
        recomputable(lambda t: (t, t), x)


def test_a_recipe_made_under_autocast_is_recomputed_under_it():
    from msrnn_zoo.cell import recomputable

    torch.manual_seed(0)
    joint = JointConv2d({"d": 4, "h": 4}, 8, 3)
    w = torch.randn(4, 4, 3, 3, requires_grad=True)
    x, h = torch.randn(2, 4, 6, 6, requires_grad=True), torch.randn(2, 4, 6, 6)

    def residual(a, weight):
        return a + F.conv2d(a, weight, padding=1)  # the convolution in bfloat16, the sum in float32

    grads = []
    for recipe in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            d = recomputable(residual, x, w) if recipe else residual(x, w)
            out = joint(d, h)
        grads.append(torch.autograd.grad(out.float().square().sum(), (x, w, joint.weight)))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def _cats_in_backward(loss):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        cats = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.cats += func.overloadpacket is torch.ops.aten.cat
            return func(*args, **(kwargs or {}))

    with Count() as count:
        loss.backward()
    return count.cats


def test_convolutions_of_the_same_parts_in_a_row_concatenate_them_once_for_the_backward(monkeypatch):
    """PredRNN's output gate and its 1x1 read-out both convolve [C_t, M_t]: the backward concatenates c and m once
    for both, and the gradients are those of the Python backward, which concatenates for each."""

    torch.manual_seed(0)
    gate, fuse = JointConv2d({"c": 3, "m": 3}, 4, 3), nn.Conv2d(6, 4, 1)
    c, m = (torch.randn(2, 3, 5, 5, requires_grad=True) for _ in range(2))

    def step(c_for_fuse):
        return (torch.sigmoid(gate(c, m)) * torch.tanh(joint_conv2d(fuse, c_for_fuse, m))).square().sum()

    params = (c, m, gate.weight, gate.bias, fuse.weight, fuse.bias)
    shared = _cats_in_backward(step(c))
    grads = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    assert _cats_in_backward(step(c * 1.0)) == shared + 1  # other parts: each convolution concatenates its own
    for p in params:
        p.grad = None
    monkeypatch.setattr(joint_conv, "_own_hooks_allowed", lambda device: False)
    step(c).backward()
    assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))


def test_a_part_written_between_two_convolutions_is_not_shared():
    torch.manual_seed(0)
    joint = JointConv2d({"a": 2, "b": 2}, 4, 3)
    a, b = torch.randn(1, 2, 5, 5, requires_grad=True), torch.randn(1, 2, 5, 5)
    first = joint(a, b)
    b.add_(1.0)  # the second convolution reads other values, and the first one's backward must refuse
    second = joint(a, b)
    with pytest.raises(RuntimeError, match="modified in place after the forward pass"):
        (first + second).sum().backward()
    a.grad = None
    b.sub_(1.0)
    (joint(a, b).sum()).backward()  # b changed since the last convolution: its own concatenation, no error
    assert a.grad is not None


class _ParameterCasts(TorchDispatchMode):
    """Counts the casts of each parameter to half precision, by name, apart for the forward and the backward."""

    def __init__(self, model):
        super().__init__()
        self.names = {id(p): name for name, p in model.named_parameters()}
        self.phase = "forward"
        self.casts = {"forward": collections.Counter(), "backward": collections.Counter()}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and out.dtype == torch.bfloat16 and id(args[0]) in self.names:
            self.casts[self.phase][self.names[id(args[0])]] += 1
        return out


@pytest.mark.parametrize("name", ["predrnn", "ms-predrnn-pp"])
def test_a_recorded_clip_casts_each_joint_weight_once_and_its_backward_none(name):
    """As a clip is recorded (autocast without its cache), every call used to cast its weight and bias, and every
    backward the weight again (casting once per clip takes 1303 of the 11846 operations of PredRNN's recorded bf16
    step at 10 -> 10 frames off, launches.py --recorded). Now each joint convolution's weight and bias are
    cast once per clip, and the backward reads that copy."""
    from msrnn_zoo import testing

    torch.manual_seed(0)
    model = testing.small(name, num_layers=4)
    # every call convolving all its inputs: the first step's single-input convolutions (its zero states left out)
    # are autocast's own, and the bottom layer's weight with the embedding absorbed is no parameter
    model.skip_zero_states = model.absorb_embedding = False
    frames, teacher = torch.rand(2, 6, 1, 8, 8), torch.ones(2, 5)
    counter = _ParameterCasts(model)
    with counter:
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            prediction, aux = model.forward_train(frames, teacher)
        counter.phase = "backward"
        (prediction.float().square().sum() + (aux if aux is not None else 0)).backward()
    joint = [f"{path}.{p}" for path, m in model.named_modules() if isinstance(m, JointConv2d)
             for p in ("weight", "bias")]
    assert joint and {n: counter.casts["forward"][n] for n in joint} == dict.fromkeys(joint, 1)
    assert not counter.casts["backward"]


def _bf16_training_steps(name, monkeypatch, per_clip, *, cache_enabled=True, checkpointing=False):
    """Two SGD steps and a forecast under bf16 autocast, with or without the per-clip casts."""
    import contextlib

    from msrnn_zoo import network, testing

    if not per_clip:
        monkeypatch.setattr(network, "weight_casts_per_clip", contextlib.nullcontext)
    torch.manual_seed(0)
    model = testing.small(name, num_layers=4)
    model.set_grad_checkpointing(checkpointing)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    frames, teacher = torch.rand(2, 6, 1, 8, 8), (torch.rand(2, 5) > 0.5).float()
    results = []
    for _ in range(2):  # the second clip must see the weights the first step wrote in place
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=cache_enabled):
            prediction, aux = model.forward_train(frames, teacher)
        (prediction.float().square().mean() + (aux if aux is not None else 0)).backward()
        results += [prediction.detach(), *(p.grad.clone() for p in model.parameters() if p.grad is not None)]
        optimizer.step()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=cache_enabled):
        results.append(model(frames[:, :3], horizon=2))
    monkeypatch.undo()
    return results


@pytest.mark.parametrize("name", ["convlstm", "ms-predrnn-pp", "predrnn-v2", "mim"])
@pytest.mark.parametrize("cache_enabled", [True, False], ids=["autocast-cache", "as-recorded"])
def test_per_clip_weight_casts_change_no_number(name, cache_enabled, monkeypatch):
    """The same casts, fewer times: predictions, every gradient (two steps, the second after the optimizer wrote the
    weights in place) and the forecast equal to the bit; under gradient checkpointing, which recomputes each step
    outside its clip, too."""
    want = _bf16_training_steps(name, monkeypatch, per_clip=False, cache_enabled=cache_enabled)
    got = _bf16_training_steps(name, monkeypatch, per_clip=True, cache_enabled=cache_enabled)
    checkpointed = _bf16_training_steps(name, monkeypatch, per_clip=True, cache_enabled=cache_enabled,
                                        checkpointing=True)
    assert len(got) == len(want) == len(checkpointed)
    for a, b, c in zip(got, want, checkpointed):
        assert torch.equal(a, b) and torch.equal(c, b)


def test_a_weight_written_within_a_clip_is_cast_again_and_nothing_outlives_the_clip():

    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, 3, padding=1)
    parts = [torch.randn(2, 3, 6, 6, requires_grad=True) for _ in range(2)]
    with joint_conv.weight_casts_per_clip(), torch.autocast("cpu", dtype=torch.bfloat16):
        joint_conv2d(conv, *parts).sum().backward()
        with torch.no_grad():
            conv.weight.mul_(-1.0)  # in place, within the clip: the copy made before must not serve
        got = joint_conv2d(conv, *parts)
        with joint_conv.weight_casts_per_clip():  # a scope within a scope starts empty and gives the outer one back
            assert joint_conv._CLIP.casts == {}
        assert joint_conv._CLIP.casts
        elsewhere = []  # a clip in another thread has its own scope, or none
        worker = threading.Thread(target=lambda: elsewhere.append(joint_conv._CLIP.casts))
        worker.start()
        worker.join()
        assert elsewhere == [None]
    assert joint_conv._CLIP.casts is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = conv(torch.cat(parts, 1))
    assert torch.equal(got, want)


def test_under_autocast_a_double_backward_goes_through_the_backwards_concatenation():
    """A gradient penalty differentiates the backward itself: its concatenation of float32 and half-precision parts
    must then be one autograd can differentiate (a concatenation into a given result has no derivative)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 3, 3, padding=1)
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    h = torch.randn(1, 2, 5, 5).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = joint_conv2d(conv, x, h)
    (grad_x,) = torch.autograd.grad(out.float().square().sum(), x, create_graph=True)
    grad_x.square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
