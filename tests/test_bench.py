"""`msrnn-zoo bench` and `msrnn_zoo.bench`: which speed options pay on this machine.

Nothing here asserts a time: the machine is shared. What is tested is that every configuration is measured
beside the same first one, that memory counts what a configuration keeps, that a configuration this machine
cannot run is reported while the others go on, and that mistakes are refused before anything runs.
"""

import json
import os
import sys

import pytest
import torch

import msrnn_zoo
from msrnn_zoo import bench
from msrnn_zoo.cli import _print_bench, console
from msrnn_zoo.profile import retained_bytes
from msrnn_zoo.testing import run_cli as run

TINY = ("--size", 8, "--hidden", 4, "--layers", 2, "--in-frames", 2, "--out-frames", 2, "--batch-size", 1,
        "--repeat", 2)


def rows_of(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_every_configuration_is_timed_beside_the_first_with_what_it_keeps():
    rows = rows_of(run("bench", "ms-convlstm", *TINY, "--size", 16, "--configs", "plain,grad-checkpointing,bf16",
                       "--json"))
    by = {row["config"]: row for row in rows}
    assert list(by) == ["plain", "grad-checkpointing", "bf16"]
    for row in rows:
        assert row["model"] == "ms-convlstm" and row["device"] == "cpu" and "error" not in row
        assert row["train_s"] > 0 and row["forecast_fps"] > 0 and row["warmup_s"] > 0
        assert row["train_ratio"] > 0 and row["forecast_ratio"] > 0
    assert by["plain"]["train_ratio"] == 1.0 and by["plain"]["train_flags"] == ""
    assert by["grad-checkpointing"]["train_flags"] == "--grad-checkpointing"
    assert by["bf16"]["precision"] == "bf16" and by["bf16"]["train_flags"] == "--precision bf16"
    # recomputing each step in the backward keeps far less for it: measured, not assumed
    assert by["grad-checkpointing"]["kept_mib"] < 0.5 * by["plain"]["kept_mib"]


def test_train_only_times_no_forecast():
    rows = rows_of(run("bench", "convlstm", *TINY, "--configs", "plain,zero-states", "--train-only", "--json"))
    assert [row["config"] for row in rows] == ["plain", "zero-states"]
    assert all(row["train_s"] > 0 and "forecast_fps" not in row and "forecast_warmup_s" not in row for row in rows)
    assert rows[1]["train_flags"] is None  # an ablation: train has no flag for it


def test_the_table_names_the_fastest_and_the_train_flags_that_run_it():
    result = run("bench", "convlstm", *TINY, "--configs", "plain,grad-checkpointing")
    text = " ".join(result.output.split())
    assert "plain" in text and "grad-checkpointing" in text and "kept MiB" in text
    assert "Fastest training step here:" in text


def test_the_verdict_follows_the_measured_ratios(capsys):
    rows = [{"config": "plain", "train_flags": "", "train_ratio": 1.0, "train_s": 0.2},
            {"config": "clip-graph+bf16", "train_flags": "--fast-path clip-graph --precision bf16",
             "train_ratio": 0.4, "train_s": 0.08},
            {"config": "zero-states", "train_flags": None, "train_ratio": 0.7, "train_s": 0.14},
            {"config": "compile", "error": "RuntimeError: out of memory"}]
    with console.capture() as captured:
        _print_bench(rows, "what", cuda=True, baseline="plain")
    text = " ".join(captured.get().split())
    assert "Fastest training step here: clip-graph+bf16 (0.40x plain's time); train with --fast-path clip-graph " \
           "--precision bf16." in text
    assert "compile: RuntimeError: out of memory" in " ".join(capsys.readouterr().err.split())
    rows[1]["train_ratio"] = 0.9
    with console.capture() as captured:
        _print_bench(rows, "what", cuda=True, baseline="plain")
    assert "zero-states (0.70x plain's time); it holds an ablation, which train has no flag for" in \
        " ".join(captured.get().split())
    rows[1]["train_ratio"], rows[2]["train_ratio"] = 0.97, 0.96  # noise, as tf32 against plain on a CPU
    with console.capture() as captured:
        _print_bench(rows, "what", cuda=True, baseline="plain")
    text = " ".join(captured.get().split())
    assert "No configuration was clearly faster than plain: the fastest, zero-states, took 0.96x its time" in text
    assert "Fastest" not in text and "train with" not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="TF32 is a GPU's format")
def test_a_tf32_configuration_on_the_cpu_is_said_to_time_fp32():
    """train, evaluate and predict say that tf32 computes fp32 on the CPU; bench timed it beside plain without a
    word, and could end "Fastest training step here: tf32; train with --precision tf32" on noise alone."""
    result = run("bench", "convlstm", *TINY, "--repeat", 1, "--configs", "plain,tf32,clip-graph+tf32", "--train-only")
    text = " ".join(result.output.split())
    assert text.count("Note: precision tf32 computes fp32 on cpu") == 1
    assert "Note" not in run("bench", "convlstm", *TINY, "--repeat", 1, "--configs", "plain,bf16",
                             "--train-only").output


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's refusal of a GPU-only fast path")
def test_a_configuration_this_machine_cannot_run_is_reported_and_the_others_go_on():
    result = run("bench", "convlstm", *TINY, "--configs", "plain,clip-graph,grad-checkpointing", "--json")
    by = {row["config"]: row for row in rows_of(result)}
    assert "needs a GPU" in by["clip-graph"]["error"] and "train_s" not in by["clip-graph"]
    assert by["grad-checkpointing"]["train_ratio"] > 0 and by["plain"]["train_s"] > 0


def test_ctrl_c_in_the_rounds_prints_what_they_measured_as_partial(monkeypatch):
    """Ctrl-C printed "Error: Aborted." and lost the rounds already timed."""
    def ctrl_c_at(call):
        class Timer(bench.Timer):
            calls = 0

            def __call__(self, fn):
                Timer.calls += 1
                if Timer.calls == call:
                    raise KeyboardInterrupt
                return super().__call__(fn)

        monkeypatch.setattr(bench, "Timer", Timer)

    args = ("bench", "convlstm", *TINY, "--repeat", 3, "--configs", "plain,grad-checkpointing")
    ctrl_c_at(9)  # 4 warm-ups (a training step and a forecast each), one round of 4, then the second round's first
    rows = rows_of(result := run(*args, "--json", ok=False))
    assert result.exit_code == 130 and "Interrupted after 1 of 3 rounds" in " ".join(result.output.split())
    assert [row["config"] for row in rows] == ["plain", "grad-checkpointing"]
    assert all(row["partial"] and row["rounds_completed"] == 1 and row["train_s"] > 0 for row in rows)
    ctrl_c_at(7)  # in the first round, before grad-checkpointing's turn: it is said to be untimed, not 0 or nan
    result = run(*args, ok=False)
    text = " ".join(result.output.split())
    assert result.exit_code == 130 and "partial: stopped by Ctrl-C after 0 of them" in text, text
    assert "Interrupted after 0 of 3 rounds" in text and "Aborted" not in text
    ctrl_c_at(7)
    rows = rows_of(run(*args, "--json", ok=False))
    assert "train_s" in rows[0] and "before it was timed" in rows[1]["error"]


@pytest.mark.parametrize("as_json", [(), ("--json",)])
def test_when_no_configuration_can_run_the_command_fails(as_json):
    """A table (or JSON) of errors alone is no measurement: a script running bench must see it failed."""
    result = run("bench", "convlstm", *TINY, "--configs", "clip-graph,compile+compile-cells", *as_json, ok=False)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "None of the 2 configuration(s) could run on cpu" in text
    assert "needs a GPU" in text and "compiled cells go with fast path" in text  # each one's reason, still


@pytest.mark.parametrize(("args", "message"), [
    (("--configs", "plain,clip-graph+bf61"), "unknown option 'bf61' in 'clip-graph+bf61'"),
    (("--configs", "plain,,bf16"), "an empty configuration"),
    (("--configs", ""), "an empty configuration"),
    (("--configs", "bf16+fp16"), "names 2 of one precision (bf16, fp16); keep one"),
    (("--configs", "compile+clip-graph"), "names 2 of one fast path"),
    (("--configs", "plain,bf16,plain"), "name one configuration twice"),
    (("--layers", 6, "--size", 6), "cannot run through the mirror"),
    (("--device", "cuda:7"), "--device cuda"),
    (("--device", "tpu"), "not a device PyTorch knows"),
    (("--option", "gain"), "--option takes KEY=VALUE"),
    (("--repeat", 0), "--repeat"),
    (("--option", "hidden_channels=3"), "pass --hidden instead"),
])
def test_mistakes_are_refused_before_anything_runs(args, message):
    result = run("bench", "ms-convlstm", *TINY, *args, ok=False)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Error:" in text and "Traceback" not in text
    assert message in text
    assert "Timing" not in text


def test_an_unknown_model_is_one_red_line():
    result = run("bench", "ms-convlstmm", ok=False)
    assert result.exit_code == 1 and "Error:" in result.output and "ms-convlstm" in result.output
    tagged = run("bench", "ms-convlstm.kth", ok=False)  # was about "Config overrides" the user never gave
    assert tagged.exit_code == 1 and "give 'ms-convlstm' rather than 'ms-convlstm.kth'" in tagged.output


def test_configurations_map_onto_models_and_train_flags():
    base = msrnn_zoo.create("convlstm", hidden_channels=4, num_layers=2)
    model, precision = bench.configured(base, "grad-checkpointing+fp16+zero-states")
    assert precision == "fp16" and model is not base
    assert model.grad_checkpointing and not model.skip_zero_states
    assert base.skip_zero_states and not base.grad_checkpointing  # the original is left as it was
    assert bench.train_flags("compile-cells+bf16") == "--compile-cells --precision bf16"
    assert bench.train_flags("plain") == "" and bench.train_flags("embedding+bf16") is None
    assert bench.parse_configs(" plain , channels-last+bf16") == ["plain", "channels-last+bf16"]
    assert bench.parse_configs("plain, channels-last + bf16") == ["plain", "channels-last+bf16"]
    with pytest.raises(ValueError, match="twice"):  # the same options in another order: the same configuration
        bench.parse_configs("channels-last+bf16,bf16+channels-last")
    assert bench.configured(base, "clip-graph+tf32" if torch.cuda.is_available() else "tf32")[1] == "tf32"
    assert bench.train_flags("channels-last+tf32") == "--channels-last --precision tf32"
    with pytest.raises(ValueError, match="names 2 of one precision"):
        bench.parse_configs("tf32+bf16")


def test_the_profilers_native_chatter_stays_out_of_a_commands_output(capfd):
    print("before", file=sys.stderr, flush=True)
    kept = retained_bytes(lambda: torch.ones(256, 256, requires_grad=True) * 2)
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert kept >= 256 * 256 * 4
    assert err.splitlines() == ["before", "after"]  # nothing from Kineto between them; stderr works again


def _refuses_obvious_overcommit():
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip() in ("0", "2")
    except OSError:
        return False


@pytest.mark.skipif(not _refuses_obvious_overcommit(), reason="this kernel may grant 16 TB and kill us on use")
def test_frames_too_big_for_the_machine_are_one_red_line():
    result = run("bench", "convlstm", *TINY, "--size", 2**20, ok=False)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Error: Ran out of memory" in text and "Traceback" not in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_each_configuration_reports_its_peak_memory():
    rows = rows_of(run("bench", "ms-convlstm", *TINY, "--size", 16, "--device", "cuda",
                       "--configs", "plain,clip-graph,clip-graph+bf16", "--json"))
    assert [row["config"] for row in rows] == ["plain", "clip-graph", "clip-graph+bf16"]
    for row in rows:
        assert "error" not in row, row
        assert row["device"] == "cuda" and row["peak_mib"] > 0 and row["train_s"] > 0 and "kept_mib" not in row
    assert rows[1]["train_flags"] == "--fast-path clip-graph"


def test_the_help_names_every_option():
    text = " ".join(run("bench", "--help").output.split())
    assert [name for name in bench.OPTIONS if name != "none" and name not in text] == []
