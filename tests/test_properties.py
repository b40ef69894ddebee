"""Property tests: random wrong option values and malformed .npy, config.json and safetensors files thrown
at the command line. Whatever is thrown, the answer is exit code 1, one line and no traceback, and no file
outside the run directory changes (for a new run: nothing at all is written)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msrnn_zoo.cli import main

# 25 fixed examples per property in the suite; MSRNN_ZOO_PROPERTY_EXAMPLES=500 explores further, at random.
EXAMPLES = int(os.environ.get("MSRNN_ZOO_PROPERTY_EXAMPLES", "25"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize="MSRNN_ZOO_PROPERTY_EXAMPLES" not in os.environ,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TINY = ["--hidden", "4", "--layers", "2", "--in-frames", "3", "--out-frames", "3", "--batch-size", "8",
        "--max-train-clips", "8", "--max-eval-clips", "4"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    tree = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        tree[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "d"
    return tree


def assert_refused(result):
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output


@pytest.fixture(scope="module")
def workspace():
    """A user's folder: their clips, their notes, and one trained run that the tests copy and damage."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        np.save(root / "clips.npy", (np.random.default_rng(0).random((24, 6, 16, 16)) * 255).astype(np.uint8))
        (root / "notes.txt").write_text("mine")
        result = invoke("train", "convlstm", "--data", root / "clips.npy", "--out", root / "run", *TINY)
        assert result.exit_code == 0, result.output
        yield root


@pytest.fixture
def scratch(workspace):
    """A fresh copy of the workspace for one example (hypothesis runs many examples per test)."""

    def make() -> tuple[tempfile.TemporaryDirectory, Path]:
        holder = tempfile.TemporaryDirectory()
        root = Path(holder.name) / "ws"
        shutil.copytree(workspace, root)
        return holder, root

    return make


# ---------------------------------------------------------------------------------------------- options
def _not_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return True
    return False


non_positive = st.integers(max_value=0).map(str)
not_a_number = st.text(min_size=0, max_size=8).filter(_not_int)
bad_positive = st.one_of(non_positive, not_a_number)
bad_float = st.one_of(st.floats(max_value=0).map(str), st.sampled_from(["nan", "-inf", "abc", ""]))


def _bad_split(text: str) -> bool:
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        return True
    return len(parts) != 3 or any(not (p >= 0) for p in parts) or abs(sum(parts) - 1) > 1e-6


bad_split = st.one_of(st.text(max_size=12), st.lists(st.floats(allow_nan=True), max_size=4).map(
    lambda xs: ",".join(map(str, xs)))).filter(_bad_split)
bad_device = st.text(min_size=1, max_size=10).filter(lambda d: d.strip() not in ("cpu",) and not d.startswith("cpu"))
bad_option = st.one_of(
    st.from_regex(r"[a-z_]{1,8}=[0-9a-z]{0,4}", fullmatch=True).filter(lambda o: o.split("=")[0] not in (
        "hidden_channels", "num_layers", "kernel_size", "in_channels")),  # the cell has no such option
    st.sampled_from(["noequals", "=1", "hidden_channels=abc", "hidden_channels=-2", "kernel_size=4",
                     "num_layers=0", "in_channels=null", "hidden_channels=[1]"]),
)
even_kernel = st.integers(min_value=1, max_value=20).map(lambda k: str(2 * k))

BAD_TRAIN_OPTIONS = st.one_of(
    st.tuples(st.sampled_from(["--epochs", "--batch-size", "--in-frames", "--out-frames", "--hidden", "--layers",
                               "--max-train-clips", "--max-eval-clips", "--keep-checkpoints", "--sampling-steps"]),
              bad_positive),
    st.tuples(st.just("--kernel-size"), st.one_of(bad_positive, even_kernel)),
    st.tuples(st.just("--lr"), bad_float),
    st.tuples(st.just("--seed"), st.one_of(st.integers(max_value=-1).map(str), not_a_number)),
    st.tuples(st.just("--checkpoint-every"), st.one_of(st.integers(max_value=-1).map(str), not_a_number)),
    st.tuples(st.just("--split"), bad_split),
    st.tuples(st.just("--device"), bad_device),
    st.tuples(st.just("--option"), bad_option),
)


@SETTINGS
@given(option=BAD_TRAIN_OPTIONS)
def test_bad_training_options(scratch, option):
    holder, root = scratch()
    with holder:
        before = snapshot(root)
        result = invoke("train", "convlstm", "--data", root / "clips.npy", "--out", root / "new", *TINY, *option)
        assert_refused(result)
        assert snapshot(root) == before  # not even the new run directory


BAD_OTHER_OPTIONS = st.one_of(
    st.tuples(st.just("evaluate"), st.sampled_from(["--batch-size", "--max-clips"]), bad_positive),
    st.tuples(st.just("evaluate"), st.sampled_from(["--split", "--device", "--frames"]), st.text(max_size=6).filter(
        lambda v: v not in ("train", "val", "test", "cpu", "future", "all"))),
    st.tuples(st.just("predict"), st.sampled_from(["--horizon", "--scale"]),
              st.one_of(bad_positive, st.integers(min_value=1001).map(str))),
    st.tuples(st.just("predict"), st.just("--index"), st.one_of(st.integers(max_value=-1).map(str), not_a_number,
                                                                 st.integers(min_value=5, max_value=10**9).map(str))),
    st.tuples(st.just("predict"), st.just("--out"), st.text(min_size=1, max_size=8).filter(
        lambda n: "/" not in n and "\x00" not in n and not n.lower().endswith((".gif", ".png")))),
    st.tuples(st.just("train"), st.just("--epochs"), st.one_of(bad_positive, st.integers(-5, 0).map(str))),
)


@SETTINGS
@given(option=BAD_OTHER_OPTIONS)
def test_bad_options_of_commands_on_a_run(scratch, option):
    command, name, value = option
    holder, root = scratch()
    with holder:
        run = root / "run"
        before = snapshot(root)
        args = ["train", "--resume", run] if command == "train" else [command, run]
        if name == "--out":
            value = str(root / value)
        result = invoke(*args, name, value)
        assert_refused(result)
        assert snapshot(root) == before


# ---------------------------------------------------------------------------------------------- .npy files
def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@st.composite
def malformed_npy(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "truncated", "shape", "dtype", "values", "empty"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "truncated":
        whole = _npy(np.zeros((10, 6, 16, 16), np.uint8))
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == "shape":
        dims = draw(st.lists(st.integers(0, 5), min_size=0, max_size=7).filter(lambda d: len(d) not in (4, 5)))
        return _npy(np.zeros(dims, np.float32))
    if kind == "dtype":
        dtype = draw(st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint16, np.bool_, np.complex64]))
        return _npy(np.zeros((10, 6, 16, 16), dtype))
    if kind == "values":
        array = np.full((10, 6, 16, 16), 0.5, np.float32)
        bad = draw(st.one_of(st.sampled_from([np.nan, np.inf, -np.inf]),
                             st.floats(min_value=1.0001, max_value=1e30), st.floats(max_value=-1e-6, min_value=-1e30)))
        array[draw(st.integers(0, 9)), draw(st.integers(0, 5)), draw(st.integers(0, 15)), 3] = bad
        return _npy(array)
    shape = draw(st.sampled_from([(0, 6, 16, 16), (10, 0, 16, 16), (10, 6, 0, 16), (10, 2, 16, 16)]))
    return _npy(np.zeros(shape, np.uint8))  # nothing in it, or clips too short for 3 + 3 frames


@SETTINGS
@given(content=malformed_npy())
def test_malformed_clip_files(scratch, content):
    holder, root = scratch()
    with holder:
        (root / "bad.npy").write_bytes(content)
        before = snapshot(root)
        assert_refused(invoke("train", "convlstm", "--data", root / "bad.npy", "--out", root / "new", *TINY))
        assert snapshot(root) == before
        assert_refused(invoke("train", "convlstm", "--data", root / "bad.npy", "--out", root / "run", "--force",
                              *TINY))
        assert snapshot(root) == before  # the old run is untouched too


@SETTINGS
@given(content=malformed_npy())
def test_malformed_input_clips_for_predict(scratch, content):
    holder, root = scratch()
    with holder:
        (root / "context.npy").write_bytes(content)
        before = snapshot(root, skip=root / "run")
        result = invoke("predict", root / "run", "--input", root / "context.npy", "--out", root / "run" / "f.gif")
        if result.exit_code == 0:  # a (T, H, W) array of valid frames is a valid context, whatever its T
            return
        assert_refused(result)
        assert snapshot(root, skip=root / "run") == before


# ---------------------------------------------------------------------------------------------- config.json
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                      max_size=3), max_leaves=6)


@st.composite
def malformed_config(draw) -> bytes:
    config = {"cell": "convlstm", "schedule": "single", "in_channels": 1, "hidden_channels": 4, "num_layers": 2,
              "kernel_size": 3, "schedule_options": {}, "cell_options": {}}
    kind = draw(st.sampled_from(["bytes", "type", "missing", "extra", "not-object"]))
    if kind == "bytes":
        return draw(st.binary(max_size=100).filter(lambda b: not _is_json_object(b)))
    if kind == "type":
        key = draw(st.sampled_from(sorted(config)))
        wrong = {"cell": st.one_of(st.none(), st.integers(), st.text(max_size=6).filter(lambda t: t != "convlstm")),
                 "schedule": st.one_of(st.none(), st.integers(), st.text(max_size=6).filter(
                     lambda t: t not in ("single", "mirror"))),
                 "schedule_options": st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2),
                                               st.dictionaries(st.text(min_size=1, max_size=4), json_values,
                                                               min_size=1, max_size=2)),
                 "cell_options": st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2),
                                           st.dictionaries(st.text(min_size=1, max_size=4), json_values,
                                                           min_size=1, max_size=2))}
        numbers = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.floats(allow_nan=False),
                            st.integers(max_value=0), st.integers(min_value=5, max_value=9))
        value = draw(wrong.get(key, numbers))
        if key in ("in_channels", "hidden_channels", "num_layers", "kernel_size") and isinstance(value, int) \
                and not isinstance(value, bool) and value > 0:  # a valid number, but not the one the weights fit
            value = {"in_channels": 3, "hidden_channels": 5, "num_layers": 3, "kernel_size": 2}[key]
        config[key] = value
    elif kind == "missing":
        del config["cell"]
    elif kind == "extra":
        config[draw(st.text(min_size=1, max_size=6).filter(lambda k: k not in config))] = draw(json_values)
    else:
        return json.dumps(draw(st.one_of(st.lists(json_values, max_size=3), st.integers(), st.text()))).encode()
    return json.dumps(config).encode()


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, UnicodeDecodeError):
        return False


@SETTINGS
@given(content=malformed_config())
def test_malformed_model_config(scratch, content):
    holder, root = scratch()
    with holder:
        (root / "run" / "config.json").write_bytes(content)
        before = snapshot(root, skip=root / "run")
        assert_refused(invoke("evaluate", root / "run"))
        assert_refused(invoke("predict", root / "run", "--out", root / "run" / "f.gif"))
        assert snapshot(root, skip=root / "run") == before


# ---------------------------------------------------------------------------------------------- safetensors
@st.composite
def malformed_safetensors(draw, original: bytes) -> bytes:
    kind = draw(st.sampled_from(["bytes", "truncated", "header", "tensors"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "truncated":
        return original[: draw(st.integers(0, len(original) - 1))]
    if kind == "header":  # a plausible length, then a header that is not what it should be
        header = draw(st.one_of(st.binary(max_size=60), json_values.map(lambda v: json.dumps(v).encode())))
        return struct.pack("<Q", len(header)) + header + draw(st.binary(max_size=40))
    import torch
    from safetensors.torch import load, save

    tensors = load(original)
    name = draw(st.sampled_from(sorted(tensors)))
    change = draw(st.sampled_from(["drop", "add", "shape", "dtype", "nan"]))

    if change == "drop":
        del tensors[name]
    elif change == "add":
        tensors[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in tensors))] = torch.zeros(2)
    elif change == "shape":
        shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
        if tuple(shape) == tuple(tensors[name].shape):
            shape = [tensors[name].numel() + 1]
        tensors[name] = torch.zeros(*shape)
    elif change == "dtype":
        dtype = draw(st.sampled_from([torch.float16, torch.float64, torch.bfloat16, torch.int32, torch.int64]))
        tensors[name] = tensors[name].to(dtype)
    else:
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = float("nan")
    return save(tensors)


@SETTINGS
@given(data=st.data())
def test_malformed_weights(scratch, workspace, data):
    original = (workspace / "run" / "model.safetensors").read_bytes()
    content = data.draw(malformed_safetensors(original))
    holder, root = scratch()
    with holder:
        (root / "run" / "model.safetensors").write_bytes(content)
        before = snapshot(root, skip=root / "run")
        assert_refused(invoke("evaluate", root / "run"))
        assert snapshot(root, skip=root / "run") == before
