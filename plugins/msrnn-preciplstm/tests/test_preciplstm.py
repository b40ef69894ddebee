import copy
import importlib
import warnings
from pathlib import Path

import pytest
import torch
from msrnn_preciplstm.cell import PrecipLSTMCell
from msrnn_preciplstm.local_attention import (
    LocalAttention,
    local_attention,
    local_attention_flex,
    local_attention_unfold,
)

import msrnn_zoo
from msrnn_zoo import testing
from msrnn_zoo.cell import fold_joint_convs

DATA = Path(__file__).parent / "data"
ATTENTION = importlib.import_module("msrnn_preciplstm.local_attention")  # the module (the package exports the function)


@pytest.fixture(params=[False, True], ids=["per-sample", "samples-stacked"])
def stacked(request, monkeypatch):
    """Both ways the attention scores a batch: one sample at a time (the CPU's) and all in one tall image (GPUs')."""
    monkeypatch.setattr(ATTENTION, "STACK_SAMPLES", request.param)
    return request.param


def test_registered():
    assert {"preciplstm", "ms-preciplstm"} <= set(msrnn_zoo.list_models())


@pytest.mark.parametrize("name", ["preciplstm", "ms-preciplstm"])
def test_parity_with_original(name):
    assert testing.parity_error(DATA / f"{name}.safetensors") < 1e-5


def test_conformance():
    testing.run_conformance("preciplstm")


def test_options_checked():
    assert msrnn_zoo.create("preciplstm", hidden_channels=8, window=5).cells[0].window == 5
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="window must be a positive"):
            msrnn_zoo.create("preciplstm", hidden_channels=8, window=bad)
    with pytest.raises(ValueError, match="odd"):
        msrnn_zoo.create("preciplstm", kernel_size=4)
    with pytest.raises(ValueError, match="no option 'bogus'"):
        msrnn_zoo.create("preciplstm", bogus=1)


def test_memory_is_required():
    cell = PrecipLSTMCell(4, 4)
    x = torch.rand(1, 4, 6, 6)
    with pytest.raises(ValueError, match="zigzag memory"):
        cell(x, cell.init_state(1, 6, 6))


def test_original_attention_keys_are_renamed():
    cell = PrecipLSTMCell(4, 4)
    assert cell.original_key("LA.conv1.weight") == "attention.query.weight"
    assert cell.original_key("LA.conv3.weight") == "attention.value.weight"
    assert cell.original_key("_conv_mt2h_mt.bias") == "conv_t.bias"
    assert cell.original_key("c_m_ms_mt.weight") == "conv_fuse.weight"
    # every original key has a home, and every parameter of ours comes from one
    original = {f"{k}.{leaf}" for k in ("_conv_x2h", "_conv_h2h", "_conv_c2o", "_conv_x2h_m", "_conv_m2h_m",
                                       "_conv_m2o", "_conv_x2h_ms", "_conv_ms2h_ms", "_conv_ms2o",
                                       "_conv_x2h_mt", "_conv_mt2h_mt", "_conv_mt2o", "c_m_ms_mt",
                                       "_conv_x_x_att") for leaf in ("weight", "bias")}
    original |= {f"LA.conv{i}.weight" for i in (1, 2, 3)}
    translated = {cell.original_key(k): torch.zeros(1, 1) for k in original}
    assert len(translated) == len(original)
    fold_joint_convs(cell, translated)  # separate convolutions summed by one joint convolution load into it
    assert set(translated) == set(cell.state_dict())


def test_temporal_difference_reads_the_layers_own_previous_input():
    torch.manual_seed(0)
    cell = PrecipLSTMCell(4, 4, window=3).double()
    x0, x1 = torch.rand(2, 1, 4, 5, 5, dtype=torch.float64)
    memory = torch.zeros(1, 4, 5, 5, dtype=torch.float64)
    state = cell.init_state(1, 5, 5, dtype=torch.float64)
    first = cell(x0, state, memory)
    assert torch.equal(first.state[-1], x0)  # kept for the next step's difference
    # A step sees only x_t - x_{t-1} through the TDM: with the previous input swapped, T changes.
    second = cell(x1, first.state, memory)
    other = cell(x1, (*first.state[:-1], x1), memory)
    assert not torch.allclose(second.state[3], other.state[3])
    assert torch.equal(second.state[2], other.state[2])  # the spatial memory does not read it


# ---------------------------------------------------------------- local attention

CASES = [  # batch, channels, height, width, window
    (2, 3, 5, 7, 3),
    (1, 2, 5, 5, 4),     # even window: it leans up-left
    (2, 4, 6, 6, 30),    # window wider than the image
    (1, 3, 8, 5, 5),
    (2, 2, 3, 3, 1),
    (1, 2, 4, 40, 3),    # rows cut into several strips
    (2, 3, 5, 37, 5),    # ... the last one padded
    (1, 2, 6, 50, 20),
]


@pytest.mark.parametrize(("b", "c", "h", "w", "k"), CASES)
def test_local_attention_matches_unfold(b, c, h, w, k, stacked):
    torch.manual_seed(0)
    q, key, v = (torch.randn(b, c, h, w, dtype=torch.float64, requires_grad=True) for _ in range(3))
    v_wide = torch.randn(b, c + 2, h, w, dtype=torch.float64, requires_grad=True)
    for value in (v, v_wide):
        ours = local_attention(q, key, value, k)
        theirs = local_attention_unfold(q, key, value, k)
        torch.testing.assert_close(ours, theirs)
        grad = torch.randn_like(ours)
        for a, b_ in zip(torch.autograd.grad(ours, (q, key, value), grad),
                         torch.autograd.grad(theirs, (q, key, value), grad)):
            torch.testing.assert_close(a, b_)


def test_local_attention_answers_channels_last_inputs_in_channels_last(stacked):
    """A channels-last model's next convolution reads the attention (and its projections the gradients) without
    converting them: the results come in the inputs' layout, with the same values."""
    torch.manual_seed(0)
    q, key, v = (torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True) for _ in range(3))
    grad = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    nchw = local_attention(q, key, v, 5)
    nchw_grads = torch.autograd.grad(nchw, (q, key, v), grad)
    assert nchw.is_contiguous() and all(g.is_contiguous() for g in nchw_grads)
    last = [t.detach().contiguous(memory_format=torch.channels_last).requires_grad_() for t in (q, key, v)]
    out = local_attention(*last, 5)
    grads = torch.autograd.grad(out, last, grad)
    for got, want in zip((out, *grads), (nchw, *nchw_grads)):
        assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
        torch.testing.assert_close(got, want)


def test_local_attention_outside_positions_score_zero():
    # One pixel, window 3: the 8 neighbours lie outside, score 0 and carry 0.
    q = torch.full((1, 1, 1, 1), 2.0)
    v = torch.full((1, 1, 1, 1), 5.0)
    expected = 5.0 * torch.exp(torch.tensor(4.0)) / (torch.exp(torch.tensor(4.0)) + 8)
    torch.testing.assert_close(local_attention(q, q, v, 3), expected.view(1, 1, 1, 1))


@pytest.mark.parametrize(("h", "w", "k"), [(5, 5, 3), (5, 5, 4), (3, 4, 7), (2, 37, 3)])
def test_local_attention_gradcheck(h, w, k, stacked):
    torch.manual_seed(0)
    args = tuple(torch.randn(2, 2, h, w, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda q, key, v: local_attention(q, key, v, k), args)


@pytest.mark.parametrize(("w", "strip"), [(12, 12), (40, 20)])
def test_local_attention_keeps_its_inputs_and_two_numbers_per_pixel_for_backward(w, strip):
    """Not the (B, k², H, W) attention weights: the backward recomputes them from the softmax's maximum and
    denominator (two per pixel of the strip-padded rows)."""
    b, c, h, k = 2, 16, 12, 9
    q, key, v = (torch.randn(b, c, h, w, requires_grad=True) for _ in range(3))
    out = local_attention(q, key, v, k)
    saved = sum(t.numel() for t in out.grad_fn.saved_tensors)
    padded_width = -(-w // strip) * strip
    assert saved == 3 * b * c * h * w + 2 * b * h * padded_width


@pytest.mark.parametrize("x_needs_grad", [True, False])
def test_attention_module_recomputes_its_projections(x_needs_grad):
    """The module keeps x, not the three projections of it, and gives the gradients of projecting then attending."""
    torch.manual_seed(0)
    module = LocalAttention(3, 3, window=5).double()
    x = torch.randn(2, 3, 7, 20, dtype=torch.float64, requires_grad=x_needs_grad)
    out = module(x)
    assert sum(t.numel() for t in out.grad_fn.saved_tensors) == x.numel() + 3 * 9 + 2 * 2 * 7 * 20
    reference = local_attention_unfold(module.query(x), module.key(x), module.value(x), 5)
    torch.testing.assert_close(out, reference)
    grad = torch.randn_like(out)
    inputs = [p for p in (x, *module.parameters()) if p.requires_grad]
    for a, b_ in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(reference, inputs, grad)):
        torch.testing.assert_close(a, b_)


def test_local_attention_under_autocast_runs_in_float32():
    """A bfloat16 softmax over the window would lose most scores: under autocast the attention runs in float32,
    on the inputs as given (a bfloat16 query from an autocast convolution, float32 keys), with gradients back."""
    torch.manual_seed(0)
    q = torch.randn(2, 4, 9, 11).bfloat16().requires_grad_()
    key, v = (torch.randn(2, 4, 9, 11, requires_grad=True) for _ in range(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = local_attention(q, key, v, 5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, local_attention(q.float(), key, v, 5), rtol=0, atol=0)
    out.sum().backward()
    assert q.grad.dtype == torch.bfloat16 and key.grad is not None and v.grad is not None


def test_local_attention_rejects_bad_shapes():
    x = torch.rand(1, 2, 4, 4)
    with pytest.raises(ValueError, match="same batch and size"):
        local_attention(x, x, torch.rand(1, 2, 5, 4), 3)
    with pytest.raises(ValueError, match="positive number"):
        local_attention(x, x, x, 0)


# ---------------------------------------------------------------- the FlexAttention formulation

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.filterwarnings("ignore:.*flex_attention.*:UserWarning")
@pytest.mark.parametrize(("b", "c", "h", "w", "k"), CASES)
def test_flex_formulation_matches_the_reference_on_the_cpu(b, c, h, w, k):
    """Out-of-image offsets enter through the log-sum-exp: the same numbers as the reference (forward; PyTorch
    has no CPU backward for FlexAttention, the gradients are checked on a GPU)."""
    torch.manual_seed(0)
    q, key, v = (torch.randn(b, c, h, w, dtype=torch.float64) for _ in range(3))
    with torch.no_grad():
        torch.testing.assert_close(local_attention_flex(q, key, v, k), local_attention(q, key, v, k))


def test_fast_path_switches_the_attention_and_the_cpu_keeps_the_reference():
    model = msrnn_zoo.create("preciplstm", hidden_channels=4, num_layers=2, window=3)
    assert all(cell.attention.implementation == "reference" for cell in model.cells)
    model.cells[0].set_fast_path("compile")
    assert model.cells[0].attention.implementation == "flex"
    x = torch.rand(1, 4, 6, 6, requires_grad=True)  # on the CPU the reference runs, with its backward
    model.cells[0].attention(x).sum().backward()
    assert x.grad is not None
    model.cells[0].set_fast_path(None)
    assert model.cells[0].attention.implementation == "reference"


@cuda
@pytest.mark.parametrize(("c", "h", "w", "k"), [(16, 16, 16, 5), (16, 32, 32, 30), (16, 8, 24, 30), (16, 20, 12, 4),
                                               (8, 16, 16, 5), (3, 12, 12, 30)])  # under 16 channels: padded
def test_flex_formulation_matches_the_reference_on_the_gpu(c, h, w, k):
    torch.manual_seed(0)
    q, key, v = (torch.randn(2, c, h, w, device="cuda", requires_grad=True) for _ in range(3))
    ours = local_attention_flex(q, key, v, k)
    reference = local_attention(q, key, v, k)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(ours)
    for a, b_ in zip(torch.autograd.grad(ours, (q, key, v), grad), torch.autograd.grad(reference, (q, key, v), grad)):
        torch.testing.assert_close(a, b_, rtol=1e-4, atol=1e-4)


@cuda
def test_a_preciplstm_step_with_flex_attention_trains_like_the_reference():
    torch.manual_seed(0)
    model = msrnn_zoo.create("ms-preciplstm", hidden_channels=16, window=30).cuda()
    frames, teacher = torch.rand(2, 4, 1, 32, 32, device="cuda"), torch.ones(2, 3, device="cuda")

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        prediction, _ = model.forward_train(frames, teacher)
        prediction.pow(2).mean().backward()
        return prediction.detach(), [p.grad.clone() for p in model.parameters()]

    reference, reference_grads = loss_and_grads()
    for cell in model.cells:
        cell.attention.implementation = "flex"
    flex, flex_grads = loss_and_grads()
    torch.testing.assert_close(flex, reference, rtol=1e-4, atol=1e-5)
    for a, b_ in zip(flex_grads, reference_grads):
        torch.testing.assert_close(a, b_, rtol=1e-3, atol=1e-4)


@cuda
def test_compiled_cells_with_flex_attention_train_like_the_eager_cell():
    """On a GPU a fast path gives the cell FlexAttention, which traces: the compiled cell, backward included (compiled
    at the first backward, under the checkpoint policy), must give the eager numbers."""
    torch.manual_seed(0)
    eager = msrnn_zoo.create("preciplstm", hidden_channels=16, num_layers=2, window=5).cuda()
    for cell in eager.cells:
        cell.attention.implementation = "flex"
    compiled = copy.deepcopy(eager).set_compile_cells(True)
    frames, teacher = torch.rand(2, 4, 1, 16, 16, device="cuda"), torch.ones(2, 3, device="cuda")
    results = []
    for model in (eager, compiled):
        prediction, _ = model.forward_train(frames, teacher)
        prediction.pow(2).mean().backward()
        results.append((prediction.detach(), [p.grad for p in model.parameters()]))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-4, atol=1e-5)
    for a, b_ in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(a, b_, rtol=1e-3, atol=1e-4)


def test_a_training_step_keeps_no_concatenated_copy_of_gate_inputs():
    """The convolutions over ``[C_t, S_t, T_t, M']``, read by the output gate and the 1x1 read-out
    keep the parts, not a copy of them for every layer and step."""
    assert testing.concatenations_kept("preciplstm") == 0


def test_compiled_cells_on_the_cpu_run_the_reference_attention_eagerly():
    """The pure-PyTorch attention is kept out of the compiler, so the cell cannot be traced whole on the CPU: it runs
    eagerly there, said once, with the same numbers (on a GPU a fast path gives it FlexAttention, which traces)."""
    from msrnn_zoo import compiled_cells

    torch.manual_seed(0)
    model = testing.small("ms-preciplstm")
    frames = torch.rand(1, 3, 1, 16, 16)
    with torch.no_grad():
        eager = model(frames, horizon=2)
    model.set_compile_cells(True)
    said = pytest.warns(UserWarning, match="PrecipLSTMCell cannot be traced whole on cpu.*runs eagerly")
    with compiled_cells.backend("aot_eager"), torch.no_grad():
        with said:
            first = model(frames, horizon=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # said once
            torch.testing.assert_close(model(frames, horizon=2), eager, rtol=0, atol=0)
    torch.testing.assert_close(first, eager, rtol=0, atol=0)


def test_the_gates_keep_the_attended_input_and_the_difference_as_recipes():
    """X^ = X_t + W_a * LA(X_t) and X_t - X_{t-1} are made again in the backward from tensors kept anyway: two
    feature maps less per layer and step, the same gradients. Not at the first step: there the states are zero, so
    each gate convolves X^ alone (and keeps it), and the difference is X_0 itself."""
    layers, batch, frames, size = 2, 2, 5, 8
    feature_map, bias = batch * 8 * size * size * 4, 8 * 4  # W_a's bias, not kept by a convolution, is a source
    saved = testing.bytes_saved_by_recipes("preciplstm", size, frames, batch, num_layers=layers)
    assert saved == 2 * (frames - 2) * layers * feature_map - layers * bias


def test_stacking_the_samples_launches_a_batch_fewer_operations_for_the_same_numbers(monkeypatch):
    """On a GPU a step waits on launches: the stacked way runs one product per strip for the whole batch and adds
    the keys' and values' gradients with one index_add_, where the CPU's way runs one per sample and window row."""
    from torch.utils._python_dispatch import TorchDispatchMode

    module = ATTENTION

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    q, key, v = (torch.randn(4, 8, 16, 32, requires_grad=True) for _ in range(3))
    grad = torch.randn(4, 8, 16, 32)
    results = {}
    for stack in (False, True):
        monkeypatch.setattr(module, "STACK_SAMPLES", stack)
        with Count() as count:
            out = local_attention(q, key, v, 9)
            grads = torch.autograd.grad(out, (q, key, v), grad)
        results[stack] = (out.detach(), grads, count.calls)
    (out_1, grads_1, calls_1), (out_2, grads_2, calls_2) = results[False], results[True]
    torch.testing.assert_close(out_2, out_1)
    for a, b in zip(grads_2, grads_1):
        torch.testing.assert_close(a, b)
    assert calls_2 * 4 < calls_1, (calls_1, calls_2)
    torch.use_deterministic_algorithms(True)  # the slices again: a GPU's index_add_ adds in no fixed order
    try:
        with Count() as count:
            torch.autograd.grad(local_attention(q, key, v, 9), (q, key, v), grad)
    finally:
        torch.use_deterministic_algorithms(False)
    assert count.calls > calls_2  # the same operations otherwise
    monkeypatch.setattr(module, "STACK_SAMPLES", None)
    assert not module._stacks_samples(q)  # the CPU's way on the CPU


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_model_cast_to_half_precision_forecasts_in_it(dtype):
    """model.bfloat16() / .half() without autocast: the attention still runs in float32 but hands the cell its own
    dtype back; its float32 result stopped the step at the next convolution ("Input type (float) and bias type")."""
    torch.manual_seed(0)
    model = msrnn_zoo.create("preciplstm", hidden_channels=4, num_layers=2).eval()
    frames = torch.rand(1, 2, 1, 8, 8)
    with torch.no_grad():
        reference = model(frames, horizon=2)
        future = model.to(dtype)(frames.to(dtype), horizon=2)
    assert future.dtype == dtype
    torch.testing.assert_close(future.float(), reference, rtol=0, atol=0.02)
