"""The 'clip-graph' fast path: whole clips recorded as CUDA graphs give the eager path's numbers, and what a user
could trip over (kept predictions, accumulated gradients, interleaved clips, moved weights) is safe or refused."""

import copy
import json
import pickle
import warnings

import pytest
import torch

import msrnn_zoo
from msrnn_zoo import graphs, precision
from msrnn_zoo.network import FAST_PATHS

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_the_cli_offers_every_fast_path():
    from msrnn_zoo.cli import FAST_PATH_CHOICE

    assert list(FAST_PATH_CHOICE.choices) == ["none" if p is None else p for p in FAST_PATHS]


def test_the_cli_offers_every_precision():
    from msrnn_zoo.cli import PRECISION_CHOICE

    assert list(PRECISION_CHOICE.choices) == list(precision.PRECISIONS)


def test_a_new_run_records_clips_on_one_gpu_and_runs_eagerly_elsewhere(monkeypatch):
    from msrnn_zoo.train import auto_fast_path

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert auto_fast_path("cuda") == auto_fast_path("cuda:1") == "clip-graph"
    assert auto_fast_path("cpu") is None and auto_fast_path("meta") is None
    assert auto_fast_path("gpu") is None  # no device: left to the run's own check, which names the option
    assert auto_fast_path("cuda", grad_checkpointing=True) is None  # never run inside a recording
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert auto_fast_path("cuda") is None  # DDP's hooks were never run inside a recording


def test_a_new_run_on_one_gpu_is_channels_last_where_its_cell_says_it_pays(monkeypatch):
    from msrnn_zoo.train import auto_channels_last

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert auto_channels_last("convlstm", "cuda") and auto_channels_last("ms-predrnn-v2", "cuda:0")  # inherited
    assert not auto_channels_last("trajgru", "cuda")  # measured 1.56x slower
    assert not auto_channels_last("motionrnn", "cuda") and not auto_channels_last("preciplstm", "cuda")  # unmeasured
    assert not auto_channels_last("convlstm", "cpu")  # the CPU's states are channels-last already, weights not
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert not auto_channels_last("convlstm", "cuda")


def test_train_picks_the_fast_path_for_its_device_unless_told(tmp_path, clips_file):
    from click.testing import CliRunner

    from msrnn_zoo.cli import main

    def train(*args):
        result = CliRunner().invoke(main, ["train", *map(str, args)])
        assert result.exit_code == 0, result.output
        return json.loads((out / "train_config.json").read_text())

    out = tmp_path / "run"
    first = train("convlstm", "--data", clips_file, "--out", out, "--hidden", "2", "--layers", "1",
                  "--in-frames", "2", "--out-frames", "2", "--batch-size", "8")
    assert first["fast_path"] is None and first["channels_last"] is False  # the CPU
    resumed = train("--resume", out, "--epochs", "2", "--fast-path", "auto")
    assert resumed["fast_path"] is None and resumed["channels_last"] is False
    told = train("convlstm", "--data", clips_file, "--out", out, "--force", "--hidden", "2", "--layers", "1",
                 "--in-frames", "2", "--out-frames", "2", "--batch-size", "8", "--channels-last")
    assert told["channels_last"] is True


def test_without_a_gpu_the_clip_graph_path_says_what_to_use():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    model = msrnn_zoo.create("convlstm", hidden_channels=2, num_layers=1)
    with pytest.raises(ValueError, match="'clip-graph' fast path records CUDA graphs and needs a GPU.*'compile'"):
        model.set_fast_path("clip-graph")
    assert model.fast_path is None


class FakeRecording:
    """Stands in for a CUDA recording on the CPU: runs the clip eagerly and counts how often it was made."""

    made = 0

    def __init__(self, fn, args, params, autocast_dtype):
        type(self).made += 1
        self.fn, self.generation = fn, 0

    def replay(self, args):
        return tuple(self.fn(*args))


def test_recordings_are_kept_per_key_and_dropped_when_the_weights_move(monkeypatch):
    """The cache logic, on the CPU: one recording per shape and mode, at most ``keep``, none kept over moved weights."""
    monkeypatch.setattr(graphs, "_Recording", FakeRecording)
    FakeRecording.made = 0
    module = torch.nn.Linear(2, 2)
    cache = graphs.ClipGraphs(keep=2)
    double = lambda x: (2 * x,)  # noqa: E731
    with torch.no_grad():
        x = torch.ones(3, 2)
        assert torch.equal(cache.run("f", double, (x,), module)[0], 2 * x)
        cache.run("f", double, (torch.zeros(3, 2),), module)  # same key: replayed
        assert FakeRecording.made == 1
        cache.run("f", double, (x,), module, key=5)  # another key (a horizon)
        cache.run("f", double, (torch.ones(4, 2),), module)  # another shape
        assert FakeRecording.made == 3 and len(cache) == 2  # the oldest was dropped
        module.weight.data = module.weight.data.clone()  # new storage: recordings would read freed memory
        cache.run("f", double, (torch.ones(4, 2),), module)
        assert FakeRecording.made == 4 and len(cache) == 1
    module.eval()
    with torch.no_grad():
        cache.run("f", double, (torch.ones(4, 2),), module)
    assert FakeRecording.made == 5  # eval and train may differ (dropout): recorded apart
    with torch.no_grad(), precision.float32_products("tf32"):
        cache.run("f", double, (torch.ones(4, 2),), module)
    assert FakeRecording.made == 6  # its products were chosen for fp32: tf32 records its own


def test_copies_of_a_model_do_not_share_its_recordings():
    cache = graphs.ClipGraphs(keep=3)
    cache._recordings["k"] = object()  # what a recording would be: nothing a copy can use
    for twin in (copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
        assert len(twin) == 0 and twin.keep == 3


# ------------------------------------------------------------------------------------------------ on a GPU
def loss_and_grads(model, frames, teacher):
    prediction, aux = model.forward_train(frames, teacher)
    loss = (prediction - frames[:, 1:]).pow(2).mean() + (aux if aux is not None else 0)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), prediction.detach(), grads


def assert_same(a, b, rtol=1e-4, atol=1e-5):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@cuda
@pytest.mark.parametrize(("name", "rtol", "atol", "compile_cells"), [
    ("convlstm", 1e-4, 1e-5, False), ("ms-predrnn", 1e-4, 1e-5, False), ("ms-predrnn-v2", 1e-4, 1e-5, False),
    ("ms-mim", 1e-4, 1e-5, False),
    ("ms-preciplstm", 1e-3, 1e-4, False),  # FlexAttention against the reference: the tolerance of the plugin's test
    ("convlstm", 1e-4, 1e-5, True), ("ms-predrnn-pp", 1e-4, 1e-5, True),  # recorded around inductor's kernels
])
def test_training_steps_and_forecasts_match_the_eager_path(name, rtol, atol, compile_cells):
    """Three SGD steps of twin models: the recorded clips see every update of the weights.

    SGD, not Adam: Adam's normalisation would blow a rounding difference of a near-zero gradient up to a full step.
    """
    torch.manual_seed(0)
    eager = msrnn_zoo.create(name, hidden_channels=8, num_layers=4).cuda()
    fast = copy.deepcopy(eager).set_fast_path("clip-graph").set_compile_cells(compile_cells)
    frames = torch.rand(2, 5, 1, 16, 16, device="cuda")
    teacher = torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]], device="cuda")
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (eager, fast)]
    for _ in range(3):
        results = []
        for model, optimizer in zip((eager, fast), optimizers):
            prediction, aux = model.forward_train(frames, teacher)
            loss = (prediction - frames[:, 1:]).pow(2).mean() + (aux if aux is not None else 0)
            loss.backward()
            results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        assert_same(results[1][0], results[0][0], rtol, atol)
        for n, grad in results[0][1].items():
            assert_same(results[1][1][n], grad, rtol, atol)
        with torch.no_grad():
            assert_same(fast(frames[:, :3], horizon=2), eager(frames[:, :3], horizon=2), rtol, atol)
    assert len(fast._clip_graphs) == 2  # one training recording, one forecast recording


@cuda
def test_what_a_replay_hands_out_survives_the_next_replay_and_gradients_accumulate():
    torch.manual_seed(0)
    model = msrnn_zoo.create("ms-convlstm", hidden_channels=4, num_layers=4).cuda().set_fast_path("clip-graph")
    teacher = torch.ones(1, 3, device="cuda")
    first, second = torch.rand(1, 4, 1, 16, 16, device="cuda"), torch.rand(1, 4, 1, 16, 16, device="cuda")
    _, kept, grads_first = loss_and_grads(model, first, teacher)
    kept_copy = kept.clone()
    _, _, grads_second = loss_and_grads(model, second, teacher)
    assert torch.equal(kept, kept_copy)
    for frames in (first, second):  # no zero_grad in between: the gradients add up, as they do eagerly
        prediction, _ = model.forward_train(frames, teacher)
        (prediction - frames[:, 1:]).pow(2).mean().backward()
    for n, p in model.named_parameters():
        assert_same(p.grad, grads_first[n] + grads_second[n])


@cuda
def test_replayed_backwards_accumulate_on_the_training_stream():
    """A recording keeps no autograd graph: it would hold gradient accumulators made on the recording's side
    stream, and every replayed backward would hand its gradients across streams (PyTorch warns of it)."""
    model = msrnn_zoo.create("ms-convlstm", hidden_channels=4, num_layers=4).cuda().set_fast_path("clip-graph")
    frames, teacher = torch.rand(1, 4, 1, 16, 16, device="cuda"), torch.ones(1, 3, device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # the first step records, the second only replays
            loss_and_grads(model, frames, teacher)
    (recording,) = model._clip_graphs._recordings.values()
    assert all(o.grad_fn is None for o in recording.outputs)
    assert not [w for w in caught if "AccumulateGrad" in str(w.message)]


@cuda
def test_a_backward_after_the_next_forward_is_refused():
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=2).cuda().set_fast_path("clip-graph")
    frames, teacher = torch.rand(1, 4, 1, 8, 8, device="cuda"), torch.ones(1, 3, device="cuda")
    model.forward_train(frames, teacher)  # recorded
    early, _ = model.forward_train(frames, teacher)
    model.forward_train(frames, teacher)
    with pytest.raises(RuntimeError, match="backward must run before the next training forward"):
        early.sum().backward()


@cuda
def test_bf16_autocast_replays_see_the_updated_weights():
    torch.manual_seed(0)
    eager = msrnn_zoo.create("ms-predrnn", hidden_channels=8, num_layers=4).cuda()
    fast = copy.deepcopy(eager).set_fast_path("clip-graph")
    frames, teacher = torch.rand(2, 4, 1, 16, 16, device="cuda"), torch.ones(2, 3, device="cuda")
    for _ in range(2):
        with torch.no_grad():
            for p in (*eager.parameters(), *fast.parameters()):
                p.mul_(0.9)  # what an optimizer does: in place
        with torch.autocast("cuda", dtype=torch.bfloat16):  # with autocast's weight cache on, as users have it
            want, _ = eager.forward_train(frames, teacher)
            got, _ = fast.forward_train(frames, teacher)
        assert got.dtype == want.dtype
        assert_same(got.float(), want.float(), rtol=2e-2, atol=2e-2)
        # the backward reads the half-precision weights its forward cast (once per clip): those of this replay
        for prediction in (want, got):
            prediction.float().square().mean().backward()
        for (name, a), b in zip(eager.named_parameters(), fast.parameters()):
            assert a.grad is not None and b.grad is not None, name
            error = (b.grad - a.grad).norm() / a.grad.norm().clamp_min(1e-12)
            # a replay a step behind would hold weights 10% off; eager autocast sums the plain convolutions'
            # gradients over the steps in bf16 (its cache), the recording in float32: a few bf16 roundings apart
            assert error < 5e-2, (name, error.item())
            a.grad = b.grad = None


@cuda
def test_a_tf32_forecast_is_recorded_apart_and_replays_tf32_products():
    """PrecipLSTM's attention is matrix products: under tf32 a recording must hold TF32 kernels, not replay those an
    fp32 recording chose (nor the reverse), and its forecast must be the eager tf32 forecast's."""
    torch.manual_seed(0)
    eager = msrnn_zoo.create("preciplstm", hidden_channels=8, num_layers=2).cuda()
    fast = copy.deepcopy(eager).set_fast_path("clip-graph")
    frames = torch.rand(2, 3, 1, 16, 16, device="cuda")

    def forecast(model, name):
        with torch.no_grad(), precision.autocast(name, "cuda"):
            return model(frames, horizon=2)

    replayed = {name: forecast(fast, name) for name in ("fp32", "tf32", "fp32")}  # fp32 twice: replayed, not re-made
    assert len(fast._clip_graphs) == 2
    assert not torch.equal(replayed["tf32"], replayed["fp32"])  # one recording replayed for both would be equal
    # FlexAttention against the reference: the plugin test's tolerance in fp32, wider for two sets of TF32 roundings
    assert_same(replayed["fp32"], forecast(eager, "fp32"), rtol=1e-3, atol=1e-4)
    assert_same(replayed["tf32"], forecast(eager, "tf32"), rtol=1e-2, atol=1e-3)
    assert torch.get_float32_matmul_precision() == "highest"


@cuda
def test_moved_weights_and_new_shapes_are_recorded_again():
    model = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=2).cuda().set_fast_path("clip-graph")
    teacher = torch.ones(1, 3, device="cuda")
    with torch.no_grad():
        model(torch.rand(1, 4, 1, 8, 8, device="cuda"))
        model(torch.rand(1, 4, 1, 16, 16, device="cuda"))
        assert len(model._clip_graphs) == 2
        model.set_channels_last(True)  # new weight storage
        model(torch.rand(1, 4, 1, 8, 8, device="cuda"))
        assert len(model._clip_graphs) == 1
    loss_and_grads(model, torch.rand(1, 4, 1, 8, 8, device="cuda"), teacher)
    assert model.cpu()(torch.rand(1, 4, 1, 8, 8)).shape == (1, 1, 1, 8, 8)  # CPU tensors run eagerly



@cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_run_trained_on_recorded_clips_takes_the_eager_steps(tmp_path, clips_file, precision):
    """``fit`` end to end on recorded clips against the eager path: Adam, checkpoints, the scheduled sampling
    mask and, in fp16, the loss scaler; then a forecast and a resumed run. Written after the last session that had
    a GPU: not yet run on one."""
    from msrnn_zoo.train import Trainer, new_train_config

    def config(**kw):
        return new_train_config("ms-predrnn", model_options={"hidden_channels": 8}, data=str(clips_file),
                                in_frames=2, out_frames=2, batch_size=7, epochs=2, device="cuda",
                                precision=precision, **kw)

    eager = Trainer.create(tmp_path / "eager", config())
    recorded = Trainer.create(tmp_path / "recorded", config(fast_path="clip-graph"))
    tolerance = 1e-3 if precision == "fp16" else 1e-4
    assert recorded.fit() == pytest.approx(eager.fit(), rel=tolerance)
    context = torch.rand(3, 2, 1, 16, 16, device="cuda")
    with torch.no_grad():
        assert_same(recorded.model.eval()(context, horizon=2), eager.model.eval()(context, horizon=2),
                    rtol=tolerance, atol=tolerance)
    assert len(recorded.model._clip_graphs) == 2  # the training clip and the forecast
    resumed = Trainer.resume(tmp_path / "recorded", epochs=3)
    assert resumed.model.fast_path == "clip-graph" and len(resumed.fit()) > 0


def test_evaluate_records_its_forecasts_on_a_gpu_over_enough_batches():
    from msrnn_zoo.evaluate import RECORD_FROM_BATCHES, auto_fast_path

    assert auto_fast_path("cuda", RECORD_FROM_BATCHES) == "clip-graph"
    assert auto_fast_path("cuda:1", 10_000) == "clip-graph"
    assert auto_fast_path(torch.device("cuda"), RECORD_FROM_BATCHES - 1) is None  # the recording would not pay
    assert auto_fast_path("cpu", 10_000) is None


@cuda
def test_evaluate_on_recorded_clips_gives_the_eager_metrics(tmp_path, clips_file):
    """Written after the last session that had a GPU: not yet run on one."""
    from msrnn_zoo.evaluate import evaluate_run
    from msrnn_zoo.train import Trainer, new_train_config

    config = new_train_config("ms-predrnn", model_options={"hidden_channels": 8}, data=str(clips_file),
                              in_frames=2, out_frames=2, batch_size=4, epochs=1, device="cuda",
                              split_fractions=(0.2, 0.1, 0.7))
    Trainer.create(tmp_path / "run", config).fit()
    for frames in ("future", "all"):  # forecasts, and training clips without gradients
        eager = evaluate_run(tmp_path / "run", batch_size=1, fast_path=None, frames=frames)
        recorded = evaluate_run(tmp_path / "run", batch_size=1, frames=frames)  # 28 test clips, one per batch
        for name, result in eager["model"].metrics.items():
            assert recorded["model"][name].mean == pytest.approx(result.mean, rel=1e-4, abs=1e-6), (frames, name)
