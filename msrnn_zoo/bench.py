"""Which speed options pay on this machine: a model's training step and forecast timed under several
configurations, in turns, in one process.

Whether recorded clips, bf16, channels-last or compiled cells make a step faster depends on the device, the
frame size, the batch and the cell (on one H200, bf16 made ms-convlstm's recorded step no faster at batch 4),
so the zoo measures instead of guessing. ``msrnn-zoo bench`` and the scripts under ``benchmarks/`` share this
module: a configuration such as ``clip-graph+bf16`` means the same in every table, and it maps onto the flags
of ``train`` (:func:`train_flags`).

Timings are compared as ratios within one run: every case runs once per round, the rounds alternate the cases,
and a ratio is the median over rounds of the per-round ratio, so a change in the machine's load between rounds
cancels out.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from .network import FAST_PATHS, Forecaster
from .precision import autocast, float32_products

K = TypeVar("K", bound=Hashable)

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}


@dataclass(frozen=True)
class Option:
    """One part of a configuration: what it does to a model (or the precision it sets) and its ``train`` flag.

    ``flag`` is ``""`` for the defaults and ``None`` for an ablation: a part that turns off something the zoo does
    by default, to measure what that default buys; ``train`` has no flag for it.
    """

    help: str
    apply: Callable[[Forecaster], object] | None = None
    precision: str | None = None
    flag: str | None = ""
    choice: str | None = None
    """Options of one ``choice`` (the precision, the fast path) exclude each other within a configuration."""


def _fast_path(path: str) -> Option:
    return Option(f"set_fast_path({path!r})", lambda model: model.set_fast_path(path), flag=f"--fast-path {path}",
                  choice="fast path")


OPTIONS: dict[str, Option] = {
    "plain": Option("the defaults: fp32, eager"),
    "none": Option("the same as plain"),
    **{path: _fast_path(path) for path in FAST_PATHS if path},
    "bf16": Option("bf16 autocast, the loss in fp32 (changes the numbers slightly)", precision="bf16",
                   flag="--precision bf16", choice="precision"),
    "fp16": Option("fp16 autocast with a scaled loss (changes the numbers slightly)", precision="fp16",
                   flag="--precision fp16", choice="precision"),
    "tf32": Option("fp32 tensors, matrix products in TF32 on GPUs (changes the numbers slightly)", precision="tf32",
                   flag="--precision tf32", choice="precision"),
    "channels-last": Option("weights and states in NHWC", lambda model: model.set_channels_last(),
                            flag="--channels-last"),
    "compile-cells": Option("each cell compiled, its gate arithmetic fused",
                            lambda model: model.set_compile_cells(True), flag="--compile-cells"),
    "grad-checkpointing": Option("each time step recomputed in the backward (less memory)",
                                 lambda model: model.set_grad_checkpointing(True), flag="--grad-checkpointing"),
    "cpu-contiguous": Option("ablation: every tensor NCHW on the CPU (channels-last activations are its default)",
                             lambda model: setattr(model, "cpu_channels_last", False), flag=None),
    "embedding": Option("ablation: the 1x1 embedding computed apart, not absorbed by the bottom layer",
                        lambda model: setattr(model, "absorb_embedding", False), flag=None),
    "zero-states": Option("ablation: the first step convolves its zero states too",
                          lambda model: setattr(model, "skip_zero_states", False), flag=None),
}
"""The parts of a configuration, joined by ``+`` (``clip-graph+channels-last+bf16``)."""


def parse_configs(text: str) -> list[str]:
    """The comma-separated configurations of ``text``; a ``ValueError`` naming an unknown part before anything runs."""
    # spaces around a '+' are read as around a ',': "plain + bf16" was refused as options 'plain ' and ' bf16'
    configs = ["+".join(part.strip() for part in config.split("+")) for config in text.split(",")]
    for config in configs:
        unknown = [part for part in config.split("+") if part not in OPTIONS]
        if unknown:
            what = (f"unknown option {', '.join(map(repr, unknown))} in {config!r}" if config
                    else "an empty configuration")
            raise ValueError(f"{what} (configurations {text!r}): options are {', '.join(OPTIONS)}, joined by '+'")
        for choice in {OPTIONS[part].choice for part in config.split("+")} - {None}:
            rivals = [part for part in config.split("+") if OPTIONS[part].choice == choice]
            if len(rivals) > 1:
                raise ValueError(f"Configuration {config!r} names {len(rivals)} of one {choice} "
                                 f"({', '.join(rivals)}); keep one.")
    if len({frozenset(config.split("+")) for config in configs}) != len(configs):  # bf16+channels-last twice too
        raise ValueError(f"Configurations {text!r} name one configuration twice; name each once.")
    return configs


def configured(base: Forecaster, config: str) -> tuple[Forecaster, str]:
    """A copy of ``base`` set up for ``config`` (same weights), and the precision its steps run in."""
    model = copy.deepcopy(base)
    precision = "fp32"
    for part in config.split("+"):
        option = OPTIONS[part]
        if option.precision is not None:
            precision = option.precision
        if option.apply is not None:
            option.apply(model)
    return model, precision


def train_flags(config: str) -> str | None:
    """The ``train`` flags that run ``config`` (``""`` for the defaults), ``None`` if it holds an ablation."""
    flags = [OPTIONS[part].flag for part in config.split("+")]
    if any(flag is None for flag in flags):
        return None
    return " ".join(flag for flag in flags if flag)


class Timer:
    """Seconds of one call by the chosen clock, the device's queued work included (GPUs run asynchronously)."""

    def __init__(self, device: torch.device, clock: str = "wall") -> None:
        self.sync: Callable[[], None] | None = {"cuda": torch.cuda.synchronize,
                                                "mps": torch.mps.synchronize}.get(device.type)
        self.clock = CLOCKS[clock]

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.sync is not None:
            self.sync()
        start = self.clock()
        fn()
        if self.sync is not None:
            self.sync()
        return self.clock() - start


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during the timed rounds, carrying what was measured before it (``result``: the times of
    :func:`rounds`, the rows of :func:`compare`) and the rounds completed: minutes of timings are worth printing
    as partial rather than losing to "Aborted."."""

    def __init__(self, result: Any, completed: int) -> None:
        super().__init__(f"interrupted after {completed} complete round(s)")
        self.result = result
        self.completed = completed


def rounds(cases: Mapping[K, Callable[[], object]], repeat: int, timer: Timer,
           errors: dict[K, str] | None = None) -> dict[K, list[float]]:
    """``repeat`` rounds in which every case runs once, in turn: the seconds of each case, round by round.

    With ``errors``, a case that raises (out of memory beside the others, say) is recorded there and left out of
    the later rounds, and the others go on; without it, the exception propagates. Ctrl-C raises
    :class:`Interrupted` with the times so far.
    """
    times: dict[K, list[float]] = {name: [] for name in cases}
    completed = 0
    try:
        for _ in range(repeat):
            for name, fn in cases.items():
                if errors is not None and name in errors:
                    continue
                try:
                    times[name].append(timer(fn))
                except Exception as exc:
                    if errors is None:
                        raise
                    errors[name] = _error(exc)
            completed += 1
    except KeyboardInterrupt:
        raise Interrupted(times, completed) from None
    return times


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def median(values: Iterable[float]) -> float:
    """The median, NaN for no values (a case that was not timed)."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of the per-round ratio: a change of the machine's load between rounds cancels out."""
    return median(a / b for a, b in zip(numerator, denominator))


def cuda_peak_mib(fn: Callable[[], object]) -> float:
    """Peak CUDA memory of one call above what was allocated before it, in MiB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    resting = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - resting) / 2**20


def model_steps(model: Forecaster, frames: torch.Tensor, teacher: torch.Tensor, in_frames: int, *,
                precision: str = "fp32", optimizer: bool = True) -> tuple[Callable[[], None], Callable[[], None]]:
    """A training step and a forecast of one model on one clip.

    The training step is ``forward_train`` over the clip, MSE (plus the cell's auxiliary loss), backward and,
    with ``optimizer``, an Adam step (lr 3e-4, as the recipes) -- the step the original's ``gpu_bench.py``
    times. The forecast is ``model(context, horizon)`` without gradients over the same clip. ``precision`` runs
    both under autocast as ``train --precision`` does, the loss in fp32.
    """
    adam = torch.optim.Adam(model.parameters(), lr=3e-4) if optimizer else None
    device = frames.device

    def train() -> None:
        with float32_products(precision):
            with autocast(precision, device):
                prediction, aux = model.forward_train(frames, teacher)
            loss = F.mse_loss(prediction.float(), frames[:, 1:]) + (aux.float() if aux is not None else 0)
            loss.backward()
        if adam is not None:
            adam.step()
        model.zero_grad(set_to_none=True)

    def forecast() -> None:
        with torch.no_grad(), autocast(precision, device):
            model(frames[:, :in_frames], horizon=frames.shape[1] - in_frames)

    return train, forecast


def settle(model: Forecaster, train: Callable[[], None]) -> None:
    """One eager training step, so that the warm-up measures compilation or recording alone, and its peak memory
    what a recording holds, not cuDNN's timing of its algorithms on the first call of each shape."""
    fast_path, compiled = model.fast_path, model.compile_cells
    model.set_fast_path(None)
    model.set_compile_cells(False)  # the warm-up counts the compilation
    train()
    model.set_compile_cells(compiled)
    model.set_fast_path(fast_path)


def _kept_mib(model: Forecaster, frames: torch.Tensor, teacher: torch.Tensor, precision: str) -> float:
    """MiB a training step's forward pass leaves allocated for the backward, on the CPU (profiler records)."""
    from .profile import retained_bytes

    def forward() -> object:
        with autocast(precision, frames.device):
            return model.forward_train(frames, teacher)

    return retained_bytes(forward, frames.device) / 2**20


def compare(base: Forecaster, configs: list[str], frames: torch.Tensor, teacher: torch.Tensor, in_frames: int, *,
            repeat: int = 3, timer: Timer | None = None, train_only: bool = False,
            memory: bool = True) -> list[dict[str, Any]]:
    """One row per configuration of ``base``: warm-up, then every training step and forecast taking turns.

    Each configuration gets its own copy of the same weights. A row holds ``warmup_s`` (the first training step:
    compilation or recording, after one eager step on a GPU that lets cuDNN choose its algorithms), the median
    ``train_s`` and ``forecast_s`` over ``repeat`` rounds, ``forecast_fps`` (batch x forecast frames per second)
    and ratios to the first configuration in the same rounds (``train_ratio``, ``forecast_ratio``: below 1 is
    faster). With ``memory``, on a GPU ``peak_mib`` is the peak of the warm-up or of one more step above what was
    allocated before it (a recording allocates its activations while it is made); on the CPU ``kept_mib`` is what
    the forward pass leaves allocated for the backward. A configuration that cannot run here gets an ``error``
    and the others go on; ``train_only`` leaves forecasts out (a forecast is compiled or recorded on its own, a
    second warm-up). Ctrl-C during the rounds raises :class:`Interrupted` with the rows of the rounds so far (a
    case not timed yet gets an ``error``).
    """
    device = frames.device
    timer = timer or Timer(device)
    cuda = device.type == "cuda"
    baseline = configs[0]
    whats = ("train",) if train_only else ("train", "forecast")
    cases: dict[tuple[str, str], Callable[[], None]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for config in configs:
        row: dict[str, Any] = {"config": config, "train_flags": train_flags(config)}
        try:
            model, precision = configured(base, config)  # a fast path this device lacks is refused here
            row["precision"] = precision
            train, forecast = model_steps(model, frames, teacher, in_frames, precision=precision)
            if cuda:
                settle(model, train)

            def warm_up(row: dict[str, Any] = row, train: Callable[[], None] = train) -> None:
                row["warmup_s"] = timer(train)

            if cuda and memory:
                row["warmup_peak_mib"] = cuda_peak_mib(warm_up)
            else:
                warm_up()
            if not train_only:
                row["forecast_warmup_s"] = timer(forecast)
            if memory and device.type == "cpu":  # the profiler sees the CPU allocator only
                row["kept_mib"] = _kept_mib(model, frames, teacher, precision)
        except Exception as exc:  # one configuration that cannot run here must not lose the others
            row["error"] = _error(exc)
        else:
            cases.update({(config, what): fn for what, fn in zip(whats, (train, forecast))})
        rows[config] = row
    failed: dict[tuple[str, str], str] = {}
    stopped: int | None = None
    try:
        times = rounds(cases, repeat, timer, failed)
    except Interrupted as stop:
        times, stopped = stop.result, stop.completed
        failed.update({key: "interrupted (Ctrl-C) before it was timed" for key, values in times.items()
                       if not values and key not in failed})
    baseline_ok = (baseline, "train") in cases and not any(key[0] == baseline for key in failed)
    batch, horizon = frames.shape[0], frames.shape[1] - in_frames
    for config, row in rows.items():
        failure = next((failed[(config, what)] for what in whats if (config, what) in failed), None)
        if failure:
            row["error"] = failure
        if "error" in row:
            continue
        if cuda and memory and stopped is None:  # one more step after a Ctrl-C would not be what its user asked
            row["peak_mib"] = max(cuda_peak_mib(cases[(config, "train")]), row["warmup_peak_mib"])
        row["train_s"] = median(times[(config, "train")])
        if baseline_ok:
            row["train_ratio"] = median_ratio(times[(config, "train")], times[(baseline, "train")])
        if not train_only:
            row["forecast_s"] = median(times[(config, "forecast")])
            row["forecast_fps"] = batch * horizon / row["forecast_s"]
            if baseline_ok:
                row["forecast_ratio"] = median_ratio(times[(config, "forecast")], times[(baseline, "forecast")])
    if stopped is not None:
        raise Interrupted(list(rows.values()), stopped)
    return list(rows.values())
