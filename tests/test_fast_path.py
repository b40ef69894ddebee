"""The compiled-step fast path: same numbers as the eager path; CUDA graphs where a GPU is present."""

import contextlib
import json
import warnings

import pytest
import torch

import msrnn_zoo

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def loss_and_grads(model, frames, teacher):
    model.zero_grad(set_to_none=True)
    prediction, aux = model.forward_train(frames, teacher)
    loss = (prediction - frames[:, 1:]).pow(2).mean() + (aux if aux is not None else 0)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def check_same_as_eager(model, frames, teacher, rtol=1e-5, atol=1e-6, switch=None):
    """Training loss, gradients and a forecast with the model's fast path against the eager path; or with what
    ``switch(model, on)`` turns on and off (``Forecaster.set_compile_cells``)."""
    if switch is None:
        mode = model.fast_path
        switch = lambda m, on: m.set_fast_path(mode if on else None)  # noqa: E731
    results = {}
    for on in (True, False):
        switch(model, on)
        loss, grads = loss_and_grads(model, frames, teacher)
        with torch.no_grad():
            results[on] = loss, grads, model(frames[:, :2], horizon=2)
    switch(model, True)
    (fast_loss, fast_grads, fast_forecast), (loss, grads, forecast) = results[True], results[False]
    torch.testing.assert_close(fast_loss, loss, rtol=rtol, atol=atol)
    torch.testing.assert_close(fast_forecast, forecast, rtol=rtol, atol=atol)
    for name, grad in grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


def test_options_are_checked():
    model = msrnn_zoo.create("convlstm", hidden_channels=2, num_layers=1)
    with pytest.raises(ValueError, match="Unknown fast path 'fast'"):
        model.set_fast_path("fast")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a GPU"):
            model.set_fast_path("cudagraph")
    assert model.set_fast_path(None) is model and model.fast_path is None


@pytest.fixture
def trace_only(monkeypatch):
    """torch.compile with the aot_eager backend: Dynamo and AOTAutograd trace as for inductor, nothing is compiled.

    ``fullgraph=True``: a step that Dynamo cannot capture whole (it would silently run eagerly) fails the test.
    """
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="aot_eager", dynamic=False, fullgraph=True))
    torch._dynamo.reset()  # each model is a new entry of the one compiled step: start below the recompile limit
    yield
    torch._dynamo.reset()


def test_the_compiled_step_traces_training_and_forecasting(trace_only):
    torch.manual_seed(0)
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=2).set_fast_path("compile")
    frames, teacher = torch.rand(2, 4, 1, 8, 8), torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    check_same_as_eager(model, frames, teacher, rtol=0, atol=1e-7)


def test_a_copy_of_a_compiled_model_runs_its_own_weights(trace_only):
    """The compiled step is bound to its model: a copy (an EMA twin, a pickled model) must not run the original's."""
    import copy
    import pickle

    torch.manual_seed(0)
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=1).set_fast_path("compile")
    frames = torch.rand(1, 2, 1, 8, 8)
    with torch.no_grad():
        before = model(frames)
        for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert twin.fast_path == "compile"
            for p in twin.parameters():
                p.zero_()
            assert twin(frames).abs().max() == 0  # every weight zero: the copy's own forecast is zero
        torch.testing.assert_close(model(frames), before, rtol=0, atol=0)


@pytest.mark.slow
def test_the_compiled_step_traces_memory_scales_auxiliary_loss_and_checkpointing(trace_only):
    """Zigzag memory moved between scales, PredRNN-V2's loss, a step recomputed in the backward: one graph each."""
    torch.manual_seed(0)
    model = msrnn_zoo.create("ms-predrnn-v2", hidden_channels=4, num_layers=4).set_fast_path("compile")
    frames, teacher = torch.rand(2, 4, 1, 8, 8), torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    # float rounding only: the loss sums each scale's layers in one reduction, whose order tracing may change
    check_same_as_eager(model, frames, teacher, rtol=1e-5, atol=1e-7)
    model.set_grad_checkpointing(True)
    check_same_as_eager(model, frames, teacher, rtol=1e-5, atol=1e-7)


def compiled_graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.fixture
def cells_traced_only():
    """Compiled cells through the aot_eager backend: traced as for inductor, nothing compiled (seconds, not minutes)."""
    from msrnn_zoo import compiled_cells

    with compiled_cells.backend("aot_eager"):
        yield


def test_compiled_cells_give_the_eager_numbers_and_every_layer_shares_them(cells_traced_only):
    """Regional compilation: Dynamo traces each cell whole (fullgraph), and the layers of a class at one size run
    one compiled graph, so a deeper stack compiles no more."""
    torch.manual_seed(0)
    frames, teacher = torch.rand(2, 4, 1, 8, 8), torch.ones(2, 3)
    graphs = {}
    for layers in (2, 4):
        model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=layers).set_compile_cells(True)
        assert model.compile_cells
        torch._dynamo.utils.counters.clear()
        loss_and_grads(model, frames, teacher)
        torch._dynamo.reset()
        graphs[layers] = compiled_graphs()
    # the bottom layer (its embedded frame) and the others, each at the first step (no gradient in the state yet)
    # and later: four graphs, however deep the stack
    assert graphs == {2: 4, 4: 4}
    model.set_compile_cells(False)
    model.set_compile_cells(True)
    check_same_as_eager_cells(model, frames, torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]))


@pytest.mark.parametrize("name", ["predrnn-pp", "ms-predrnn"])
def test_compiled_cells_trace_under_bf16_autocast(cells_traced_only, name):
    """``--precision bf16 --compile-cells``: a gate over a half-precision hidden state and float32 memories traces
    whole (no cell falls back to eager with a warning) and gives the eager bf16 step's numbers, up to bf16's
    rounding of the same products in another order."""
    torch.manual_seed(0)
    model = msrnn_zoo.create(name, hidden_channels=4, num_layers=4)
    frames, teacher = torch.rand(2, 4, 1, 8, 8), torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    results = []
    for compiled in (False, True):
        model.set_compile_cells(compiled)
        torch._dynamo.utils.counters.clear()
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            with torch.autocast("cpu", dtype=torch.bfloat16):
                results.append(loss_and_grads(model, frames, teacher))
        assert not [w for w in said if "cannot be compiled" in str(w.message)]  # how a cell says it fell back
        if compiled:
            assert compiled_graphs() > 0
    (loss, grads), (compiled_loss, compiled_grads) = results
    torch.testing.assert_close(compiled_loss, loss, rtol=0.02, atol=1e-3)
    for key, grad in grads.items():
        torch.testing.assert_close(compiled_grads[key], grad, rtol=0.05, atol=2e-3, msg=lambda m, k=key: f"{k}: {m}")


def weight_casts_and_numbers(model, frames, teacher, per_clip):
    """Casts run by a compiled bf16 training step (the profiler's count: a dispatch mode would stop Dynamo) and its
    loss, gradients and forecast; ``per_clip=False``: the cells are handed their float32 weights, as before."""
    from torch.profiler import profile

    from msrnn_zoo import compiled_cells

    torch._dynamo.reset()
    way = contextlib.nullcontext if per_clip else compiled_cells.weights_cast_per_call
    with way(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss_and_grads(model, frames, teacher)  # compiles
        with profile() as prof:
            loss, grads = loss_and_grads(model, frames, teacher)
        with torch.no_grad():
            forecast = model(frames[:, :2], horizon=2)
    casts = sum(e.name == "aten::_to_copy" for e in prof.events())
    return casts, (loss, grads, forecast)


@pytest.mark.parametrize(("name", "weights_per_layer"), [("convlstm", 1), ("predrnn-pp", 5)])
def test_compiled_cells_under_bf16_read_the_clips_copies_of_their_weights(cells_traced_only, name, weights_per_layer):
    """A compiled gate under autocast is handed the clip's bf16 copy of its weight (made once per clip), not the
    float32 parameter, which its graph would cast at every call and again in the backward: two kernels per weight
    and call on a GPU. The same numbers to the bit. Not the bottom layer, which combines its weight with the
    embedding in float32 first, nor PredRNN++'s highway unit (a module of its own inside the cell)."""
    torch.manual_seed(0)
    model = msrnn_zoo.create(name, hidden_channels=4, num_layers=4).set_compile_cells(True)
    frames, teacher = torch.rand(2, 4, 1, 8, 8), torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    casts, numbers = weight_casts_and_numbers(model, frames, teacher, per_clip=False)
    clip_casts, clip_numbers = weight_casts_and_numbers(model, frames, teacher, per_clip=True)
    (loss, grads, forecast), (clip_loss, clip_grads, clip_forecast) = numbers, clip_numbers
    assert torch.equal(clip_loss, loss) and torch.equal(clip_forecast, forecast)
    assert grads.keys() == clip_grads.keys()
    for key, grad in grads.items():
        assert torch.equal(clip_grads[key], grad), key
    weights, steps = 3 * weights_per_layer, frames.shape[1] - 1  # the three layers above the bottom one
    assert casts - clip_casts == 2 * weights * steps - weights  # two per call, one per clip


def check_same_as_eager_cells(model, frames, teacher, rtol=0.0, atol=1e-7):
    check_same_as_eager(model, frames, teacher, rtol, atol, switch=msrnn_zoo.Forecaster.set_compile_cells)


@pytest.mark.slow
def test_compiled_cells_across_scales_with_memory_auxiliary_loss_and_checkpointing(cells_traced_only):
    torch.manual_seed(0)
    model = msrnn_zoo.create("ms-predrnn-v2", hidden_channels=4, num_layers=4)
    frames, teacher = torch.rand(2, 4, 1, 8, 8), torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    check_same_as_eager_cells(model, frames, teacher)
    model.set_grad_checkpointing(True)
    check_same_as_eager_cells(model, frames, teacher)


def test_compiled_cells_and_a_compiled_step_are_one_or_the_other():
    model = msrnn_zoo.create("convlstm", hidden_channels=2, num_layers=1).set_compile_cells(True)
    with pytest.raises(ValueError, match="'compile' fast path compiles the whole step.*set_compile_cells\\(False\\)"):
        model.set_fast_path("compile")
    assert model.fast_path is None
    model.set_compile_cells(False).set_fast_path("compile")
    with pytest.raises(ValueError, match="compiled cells go with fast path 'clip-graph' or none"):
        model.set_compile_cells(True)
    assert not model.compile_cells


@pytest.mark.slow
def test_inductor_compiled_cells_on_the_cpu():
    """Inductor's real kernels (C++ on the CPU), in the model's default CPU layout (channels-last activations)."""
    torch.manual_seed(0)
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=2)
    check_same_as_eager_cells(model, torch.rand(2, 4, 1, 8, 8), torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]),
                              rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_inductor_compiled_step_on_the_cpu():
    """The real thing: inductor generates and compiles C++ for one step (tens of seconds on a busy machine)."""
    torch.manual_seed(0)
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=1).set_fast_path("compile")
    check_same_as_eager(model, torch.rand(2, 4, 1, 8, 8), torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]))


@cuda
@pytest.mark.parametrize("mode", ["compile", "cudagraph"])
def test_fast_paths_on_the_gpu(mode):
    torch.manual_seed(0)
    model = msrnn_zoo.create("ms-predrnn", hidden_channels=8).cuda().set_fast_path(mode)
    frames = torch.rand(2, 5, 1, 16, 16, device="cuda")
    teacher = torch.ones(2, 4, device="cuda")
    for _ in range(2):  # the second round replays what the first compiled and recorded
        check_same_as_eager(model, frames, teacher, rtol=1e-4, atol=1e-5)


@cuda
@pytest.mark.parametrize("mode", ["cudagraph", "clip-graph"])
def test_cuda_graphs_refuse_gradient_checkpointing(mode):
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=2).cuda().set_fast_path(mode)
    model.set_grad_checkpointing(True)
    with pytest.raises(ValueError, match="use fast path 'compile'"):
        model.forward_train(torch.rand(1, 3, 1, 8, 8, device="cuda"), torch.ones(1, 2, device="cuda"))
    if mode == "clip-graph":  # nothing is recomputed without gradients (and nothing compiled, so it is quick)
        with torch.no_grad():
            assert model(torch.rand(1, 3, 1, 8, 8, device="cuda")).shape == (1, 1, 1, 8, 8)


def test_a_run_trained_on_the_fast_path_takes_the_same_steps(trace_only, tmp_path, clips_file):
    from msrnn_zoo.train import Trainer, new_train_config

    def config(**kw):
        return new_train_config("convlstm", model_options={"hidden_channels": 4, "num_layers": 2},
                                data=str(clips_file), in_frames=2, out_frames=2, batch_size=8, **kw)

    plain = Trainer.create(tmp_path / "a", config()).fit()
    fast = Trainer.create(tmp_path / "b", config(fast_path="compile"))
    assert fast.model.fast_path == "compile"
    assert fast.fit() == pytest.approx(plain, rel=1e-6)
    assert Trainer.resume(tmp_path / "b", epochs=2, fast_path="none").model.fast_path is None
    with pytest.raises(ValueError, match="Unknown fast path 'jit'"):
        Trainer.create(tmp_path / "c", config(fast_path="jit"))


def test_a_run_trained_with_compiled_cells_takes_the_same_steps(cells_traced_only, tmp_path, clips_file):
    from msrnn_zoo.testing import run_cli
    from msrnn_zoo.train import Trainer, new_train_config

    def config(**kw):
        return new_train_config("convlstm", model_options={"hidden_channels": 4, "num_layers": 2},
                                data=str(clips_file), in_frames=2, out_frames=2, batch_size=8, **kw)

    plain = Trainer.create(tmp_path / "a", config()).fit()
    fast = Trainer.create(tmp_path / "b", config(compile_cells=True))
    assert fast.model.compile_cells
    assert fast.fit() == pytest.approx(plain, rel=1e-6)
    assert not Trainer.resume(tmp_path / "b", epochs=2, compile_cells=False).model.compile_cells
    with pytest.raises(ValueError, match="'compile' compiles the whole step.*pass compile_cells=False") as caught:
        Trainer.create(tmp_path / "c", config(compile_cells=True, fast_path="compile"))
    assert "--" not in str(caught.value) and "drop --compile-cells" in caught.value.cli_message
    assert not (tmp_path / "c").exists()

    refused = run_cli("train", "--resume", tmp_path / "b", "--epochs", "3", "--compile-cells", "--fast-path",
                      "compile", ok=False)
    assert refused.exit_code == 1 and "drop --compile-cells" in refused.output and "Traceback" not in refused.output
    run_cli("train", "--resume", tmp_path / "b", "--epochs", "3", "--compile-cells")
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["compile_cells"] is True
    run_cli("evaluate", tmp_path / "b", "--compile-cells", "--out", tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["model"]["metrics"]["mse"]["mean"] >= 0
    run_cli("predict", tmp_path / "b", "--compile-cells", "--out", tmp_path / "f.png")
    assert (tmp_path / "f.png").is_file()


def test_a_cell_the_compiler_fails_on_runs_eagerly_with_a_warning():
    """A broken toolchain (no C++ compiler for inductor, say) must not stop a run: that cell class runs eagerly."""
    from msrnn_zoo import compiled_cells

    def broken(graph, inputs):
        raise RuntimeError("no compiler here")

    torch.manual_seed(0)
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=2)
    frames, teacher = torch.rand(2, 3, 1, 8, 8), torch.ones(2, 2)
    expected = loss_and_grads(model, frames, teacher)
    model.set_compile_cells(True)
    said = pytest.warns(UserWarning, match=r"ConvLSTMCell cannot be compiled on cpu "
                        r"\(RuntimeError: no compiler here\); it runs eagerly")
    with compiled_cells.backend(broken):
        with said:
            got = loss_and_grads(model, frames, teacher)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # said once
            loss_and_grads(model, frames, teacher)
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)


def test_an_internal_error_of_the_compiler_runs_the_cell_eagerly_but_a_cells_own_error_is_raised(monkeypatch):
    """PyTorch 2.11's Dynamo asserted (a bare AssertionError from its own code) on a cell that returned
    ``NamedTuple._replace``'s result (PredRNN-V2's, since rewritten): that must fall back like any compiler
    failure. An error of the cell itself (wrong shapes, out of memory) must reach the user, and must not switch
    compilation off for later calls."""
    from msrnn_zoo import compiled_cells

    def fails_in_dynamo(*args):  # an assertion raised from a file of torch/_dynamo, as 2.11's side-effect check did
        exec(compile("assert False", "/site-packages/torch/_dynamo/side_effects.py", "exec"))

    torch.manual_seed(0)
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=2)
    frames, teacher = torch.rand(2, 3, 1, 8, 8), torch.ones(2, 2)
    expected = loss_and_grads(model, frames, teacher)
    model.set_compile_cells(True)
    monkeypatch.setattr(compiled_cells, "_compiled", lambda: fails_in_dynamo)
    compiled_cells._EAGER.clear()
    try:
        with pytest.warns(UserWarning, match=r"ConvLSTMCell cannot be compiled on cpu \(AssertionError: a check "
                          r"inside the compiler failed\); it runs eagerly"):
            got = loss_and_grads(model, frames, teacher)
        torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
        compiled_cells._EAGER.clear()

        def own_error(*args):
            raise torch.OutOfMemoryError("CUDA out of memory")

        monkeypatch.setattr(compiled_cells, "_compiled", lambda: own_error)
        with pytest.raises(torch.OutOfMemoryError, match="out of memory"):
            loss_and_grads(model, frames, teacher)
        assert not compiled_cells._EAGER  # still compiled next time
        monkeypatch.setattr(compiled_cells, "_compiled", lambda: lambda *a: (_ for _ in ()).throw(ValueError("shape")))
        with pytest.raises(ValueError, match="shape"):
            loss_and_grads(model, frames, teacher)
        assert not compiled_cells._EAGER
    finally:
        compiled_cells._EAGER.clear()


def test_compiled_cells_keep_about_what_the_eager_step_keeps(cells_traced_only):
    """The backward keeps the products and recomputes the element-wise work: without that policy the partitioner
    kept each gate's concatenated input too (1.34x the eager activation memory here; 1.06x with it, exact)."""
    from msrnn_zoo.profile import retained_bytes

    torch.manual_seed(0)
    model = msrnn_zoo.create("ms-predrnn", hidden_channels=16)
    frames, teacher = torch.rand(2, 6, 1, 32, 32), torch.ones(2, 5)
    eager = retained_bytes(lambda: model.forward_train(frames, teacher), torch.device("cpu"))
    model.set_compile_cells(True)
    loss_and_grads(model, frames, teacher)  # compiled before it is measured
    compiled = retained_bytes(lambda: model.forward_train(frames, teacher), torch.device("cpu"))
    assert compiled < 1.1 * eager


def test_a_users_torch_compile_of_the_model_breaks_only_at_the_frames_check():
    """``torch.compile(model)``, as a timm user compiles a model: the forecast and the training clip trace in one graph
    each after the check of the frames (whose NaN test reads a value, a graph break Dynamo cannot avoid); the first
    step's zero states no longer split it at every state (their mark asked whether the traced tensor belonged to
    inference mode)."""
    torch.manual_seed(0)
    model = msrnn_zoo.create("ms-predrnn", hidden_channels=4, num_layers=4)
    frames = torch.rand(2, 5, 1, 8, 8)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(model, backend="aot_eager")
    forecast = compiled(frames[:, :3], horizon=2)
    prediction, _ = torch.compile(model.forward_train, backend="aot_eager")(frames, torch.ones(2, 4))
    breaks = torch._dynamo.utils.counters["graph_break"]
    assert sum(breaks.values()) == 2 and all(reason.startswith("Data-dependent branching") for reason in breaks)
    torch.testing.assert_close(forecast, model(frames[:, :3], horizon=2))
    torch.testing.assert_close(prediction, model.forward_train(frames, torch.ones(2, 4))[0])
    torch._dynamo.reset()


def test_compiled_cells_compile_where_warnings_are_errors(cells_traced_only):
    """Under ``python -W error`` (or pytest's ``filterwarnings = error``) PyTorch's compiler stops at a warning of its
    own (it reads ``.grad`` of states that are not leaves while it wraps them); the cell is then traced again with
    warnings ignored, not run eagerly with a warning that would itself be an error."""
    from msrnn_zoo import compiled_cells

    torch.manual_seed(0)
    model = msrnn_zoo.create("predrnn", hidden_channels=4, num_layers=2).set_compile_cells(True)
    frames = torch.rand(2, 4, 1, 8, 8)
    torch._dynamo.utils.counters.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        forecast = model(frames[:, :2], horizon=2)
        loss_and_grads(model, frames, torch.ones(2, 3))
    assert not compiled_cells._EAGER and compiled_graphs() > 0
    model.set_compile_cells(False)
    torch.testing.assert_close(forecast, model(frames[:, :2], horizon=2))
