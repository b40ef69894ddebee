import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from msrnn_predrnn import PredRNNCell
from msrnn_predrnn_v2 import DecouplingLoss, PredRNNV2Cell

import msrnn_zoo
from msrnn_zoo import sampling, testing
from msrnn_zoo.cell import EmbeddedFrame
from msrnn_zoo.convert import translate

DATA = Path(__file__).parent / "data"


def test_registered():
    assert {"predrnn-v2", "ms-predrnn-v2"} <= set(msrnn_zoo.list_models())
    assert PredRNNV2Cell.uses_memory
    assert PredRNNV2Cell.sampling == "reverse"
    assert PredRNNV2Cell.auxiliary_loss is DecouplingLoss and DecouplingLoss.weight == 0.01


@pytest.mark.parametrize("name", ["predrnn-v2", "ms-predrnn-v2"])
def test_parity_with_original(name):
    assert testing.parity_error(DATA / f"{name}.safetensors") < 1e-5


def test_conformance():
    testing.run_conformance("predrnn-v2")


def test_one_adapter_shared_by_all_layers():
    model = testing.small("ms-predrnn-v2")
    assert {k for k in model.state_dict() if "adapter" in k} == {"aux_loss.adapter.weight", "aux_loss.adapter.bias"}
    weights, _ = testing.load_fixture(DATA / "ms-predrnn-v2.safetensors")
    original = {k[len("weights."):]: v for k, v in weights.items() if k.startswith("weights.")}
    ours = translate(original, model)
    source, tensor = ours["aux_loss.adapter.weight"]
    assert source == "rnns.adapter.weight" and tensor is original["rnns.adapter.weight"]


def test_bad_options_and_memory_rejected():
    with pytest.raises(ValueError, match="odd"):
        msrnn_zoo.create("predrnn-v2", kernel_size=2)
    with pytest.raises(ValueError, match="no option 'bogus'"):
        msrnn_zoo.create("predrnn-v2", bogus=1)
    cell = PredRNNV2Cell(4, 4)
    with pytest.raises(ValueError, match="spatiotemporal memory of shape"):
        cell(torch.rand(1, 4, 8, 8), cell.init_state(1, 8, 8), torch.zeros(1, 2, 8, 8))


def _increments(cell, x, state, memory):
    """dC and dM recomputed from the cell's weights, gate by gate."""
    w = {name: (conv.weight, conv.bias) for name, conv in cell.named_children()}

    def conv(name, t):
        return F.conv2d(t, *w[name], padding=cell.kernel_size // 2)

    if isinstance(x, EmbeddedFrame):  # the bottom layer's input: the frame's embedding, here computed
        x = x.materialize()
    # W_x * X + W_h * H is one convolution over [X, H] with the two weights side by side
    i, _, g, _ = conv("conv_xh", torch.cat([x, state[0]], 1)).chunk(4, 1)
    i_m, _, g_m = conv("conv_xm", torch.cat([x, memory], 1)).chunk(3, 1)
    return torch.sigmoid(i) * torch.tanh(g), torch.sigmoid(i_m) * torch.tanh(g_m)


@pytest.mark.parametrize("name", ["predrnn-v2", "ms-predrnn-v2"])
def test_decoupling_loss_is_the_formula(name):
    """0.01 * mean over steps and samples of sum over layers and channels of |cos(A dC, A dM)| over space."""
    torch.manual_seed(0)
    model = testing.small(name, hidden_channels=4)
    inputs = []
    for cell in model.cells:
        cell.register_forward_pre_hook(lambda mod, args: inputs.append((mod, *args[:3])))
    frames = torch.rand(2, 4, 1, 8, 8)
    teacher = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    with torch.no_grad():
        _, aux = model.forward_train(frames, teacher)

    weight, bias = model.aux_loss.adapter.weight.detach()[:, :, 0, 0], model.aux_loss.adapter.bias.detach()
    steps, layers, batch, channels = 3, len(model.cells), 2, 4
    terms = torch.zeros(steps, layers, batch, channels, dtype=torch.float64)
    for k, (cell, x, state, memory) in enumerate(inputs):
        t, layer = divmod(k, layers)
        with torch.no_grad():
            d_c, d_m = _increments(cell, x, state, memory)
        for b in range(batch):
            a_c = torch.einsum("oc,chw->ohw", weight, d_c[b]) + bias[:, None, None]
            a_m = torch.einsum("oc,chw->ohw", weight, d_m[b]) + bias[:, None, None]
            for c in range(channels):
                u, v = a_c[c].flatten(), a_m[c].flatten()
                terms[t, layer, b, c] = abs(float(u @ v) / math.sqrt(float(u @ u) * float(v @ v)))
    expected = (0.01 * terms.sum(dim=(1, 3)).mean()).float()
    torch.testing.assert_close(aux, expected, rtol=1e-5, atol=1e-7)


def test_training_with_reverse_sampling_and_decoupling():
    """The published recipe: reverse-sampled teacher masks, MSE + decoupling loss; the adapter learns."""
    torch.manual_seed(0)
    model = testing.small("ms-predrnn-v2")
    frames = torch.rand(2, 6, 1, 16, 16)
    schedule = sampling.get_schedule(model.cell_class.sampling)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    adapter_before = model.aux_loss.adapter.weight.detach().clone()
    losses = []
    for step in range(6):
        teacher = schedule(2, 6, 3, step / 6, generator)
        optimizer.zero_grad()
        prediction, aux = model.forward_train(frames, teacher)
        assert aux is not None and aux.ndim == 0 and aux > 0
        loss = F.mse_loss(prediction, frames[:, 1:]) + aux
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert not torch.equal(model.aux_loss.adapter.weight, adapter_before)


@pytest.mark.parametrize("prefix", ["", "ms-"])
def test_is_the_predrnn_cell_plus_decoupling(prefix):
    """V2's cell is PredRNN's: with the same weights both forecast the same frames; V2 only adds the loss."""
    assert issubclass(PredRNNV2Cell, PredRNNCell) and PredRNNV2Cell.original_keys == PredRNNCell.original_keys
    torch.manual_seed(0)
    v2 = testing.small(f"{prefix}predrnn-v2").eval()
    v1 = testing.small(f"{prefix}predrnn").eval()
    weights = v2.state_dict()
    loss_only = {k for k in weights if k.startswith("aux_loss.")}
    assert loss_only == {"aux_loss.adapter.weight", "aux_loss.adapter.bias"}
    v1.load_state_dict({k: v for k, v in weights.items() if k not in loss_only})  # strict: same names
    frames = torch.rand(2, 5, 1, 16, 16)
    teacher = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(v2(frames, horizon=3), v1(frames, horizon=3), rtol=0, atol=0)
        (p2, aux2), (p1, aux1) = v2.forward_train(frames, teacher), v1.forward_train(frames, teacher)
    torch.testing.assert_close(p2, p1, rtol=0, atol=0)
    assert aux1 is None and aux2 is not None and aux2 > 0

    # one step of one cell: PredRNN's outputs, plus the increments dC, dM as aux
    cell_v2, cell_v1 = v2.cells[0], v1.cells[0]
    x = torch.rand(2, cell_v2.in_channels, 16, 16)
    state, memory = (torch.rand(2, 8, 16, 16), torch.rand(2, 8, 16, 16)), torch.rand(2, 8, 16, 16)
    with torch.no_grad():
        out2, out1 = cell_v2(x, state, memory), cell_v1(x, state, memory)
        expected_aux = _increments(cell_v2, x, state, memory)
    assert out1.aux is None
    for a, b in zip((out2.output, *out2.state, out2.memory), (out1.output, *out1.state, out1.memory)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(out2.aux, expected_aux):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["predrnn-v2", "ms-predrnn-v2"])
def test_a_training_step_keeps_no_concatenated_copy_of_gate_inputs(name, monkeypatch):
    """The convolutions over ``[C_t, M_t]`` of PredRNN's step, read by the output gate and the 1x1 read-out
    keep the parts, not a copy of them for every layer and step. The decoupling loss puts each step's increments
    through its adapter as one batch, a concatenation that nothing else keeps: the step keeps the same bytes as
    with the layers computed apart, which keep no concatenation at all."""
    from msrnn_predrnn_v2.cell import DecouplingLoss

    from msrnn_zoo.cell import AuxiliaryLoss
    from msrnn_zoo.profile import training_memory

    def kept() -> int:
        torch.manual_seed(0)
        return training_memory(testing.small(name).train(), 2, 6, 16, 16)

    batched = kept()
    monkeypatch.setattr(DecouplingLoss, "step_total", AuxiliaryLoss.step_total)
    assert testing.concatenations_kept(name) == 0
    assert kept() == batched


@pytest.mark.parametrize("name", ["predrnn-v2", "ms-predrnn-v2"])
def test_the_layers_of_a_step_through_the_adapter_at_once_are_their_sum(name):
    """``step_total`` batches the layers of each scale; it equals the sum of the per-layer terms, gradients too."""
    from msrnn_zoo.cell import AuxiliaryLoss

    torch.manual_seed(0)
    model = testing.small(name, hidden_channels=4)
    auxes = []
    for cell in model.cells:
        cell.register_forward_hook(lambda mod, args, out: auxes.append(out.aux))
    model.forward_train(torch.rand(2, 3, 1, 8, 8), torch.ones(2, 2))
    step = auxes[: len(model.cells)]  # the first step's increments, every layer
    assert len({tuple(d_c.shape) for d_c, _ in step}) == len(set(model.levels))  # one batch per scale
    params = list(model.aux_loss.parameters())
    batched = model.aux_loss.step_total(step)
    apart = AuxiliaryLoss.step_total(model.aux_loss, step)
    torch.testing.assert_close(batched, apart, rtol=1e-6, atol=1e-7)
    weights = torch.rand_like(batched)
    grads = torch.autograd.grad((batched * weights).sum(), params, retain_graph=True)
    expected = torch.autograd.grad((apart * weights).sum(), params)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("zero", [False, True])
def test_decoupling_gradients_are_those_of_the_normalized_vectors(zero):
    """The loss divides two norms instead of normalizing both tensors: same values and gradients, in float64,
    also when an adapted increment is all zeros (its norm is clamped to F.normalize's eps, as the original's)."""
    import torch.nn.functional as F
    from msrnn_predrnn_v2.cell import DecouplingLoss

    torch.manual_seed(0)
    loss = DecouplingLoss(4).double()
    if zero:
        with torch.no_grad():
            loss.adapter.weight.zero_()
            loss.adapter.bias.zero_()
    d_c, d_m = (torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True) for _ in range(2))

    def normalized(d_c, d_m):
        c = F.normalize(loss.adapter(d_c).flatten(2), dim=2)
        m = F.normalize(loss.adapter(d_m).flatten(2), dim=2)
        return (c * m).sum(dim=2).abs().sum(dim=1)

    wrt = (d_c, d_m, loss.adapter.weight, loss.adapter.bias)
    ours, reference = loss((d_c, d_m)), normalized(d_c, d_m)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-14)
    for got, want in zip(torch.autograd.grad(ours.sum(), wrt), torch.autograd.grad(reference.sum(), wrt)):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


def test_compiles_whole():
    """With compiled cells (set_compile_cells) the cell is one fused graph, with the eager numbers."""
    testing.check_compiled_cells("predrnn-v2")
