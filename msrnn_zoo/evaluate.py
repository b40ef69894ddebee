"""Scoring a trained run on its test split, beside baselines (one clip's forecast: :mod:`msrnn_zoo.forecast`).

Every forecaster (the model, copy-last-frame, mean-frame, blank and any baseline the dataset adds) is
scored on the same clips by the same accumulators: the core metrics, MAE/RMSE in the dataset's physical
unit when it declares one, and the dataset's own scores when it has a score hook.

Two conventions for which frames count (``frames``):

``future`` (default, as OpenSTL scores)
    the ``out_frames`` forecast after the context.
``all`` (as the MS-RNN code scores)
    all T-1 frames predicted from frame 2 on: the input reconstructions made with the truth fed in
    (teacher mask of ones over the context) and then the forecast fed its own output.
"""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from .metrics import (
    BASELINES,
    DEFAULT_METRICS,
    SSIM_WINDOW,
    Baseline,
    MetricAccumulator,
    MetricReport,
    PhysicalErrorAccumulator,
    ScoreContext,
)
from .metrics import merge_reports as merge
from .network import Forecaster
from .precision import autocast, check_precision
from .sampling import teacher_forcing
from .train import (
    TRAIN_CONFIG,
    TrainConfig,
    check_run_data,
    empty_split_error,
    open_split,
    read_train_config,
    refuse_a_file_for_a_run,
    run_of_checkpoint,
)

FrameMode = Literal["future", "all"]
FRAME_MODES: dict[str, str] = {
    "future": "the forecast frames only (after the context), as OpenSTL scores",
    "all": ("all T-1 predicted frames from frame 2 on, input reconstructions included (truth fed for the context), "
            "as the MS-RNN code scores"),
}


def run_device(cfg: TrainConfig, device: str | None = None) -> tuple[str, str | None]:
    """Where to run a trained model: ``device`` if given, else the device the run trained on when it is here.

    Returns the device and a note for the user when the run trained on a GPU this machine does not have
    (the CPU is used instead), else ``None``.
    """
    if device is not None:
        return device, None
    trained = torch.device(cfg.device)
    if trained.type != "cuda":
        return cfg.device, None
    if not torch.cuda.is_available():
        return "cpu", f"The run trained on {cfg.device}, but PyTorch sees no GPU here: running on the CPU."
    if trained.index is not None and trained.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        return "cuda", f"The run trained on {cfg.device}; this machine has {count} GPU(s): using cuda."
    return cfg.device, None


WEIGHT_CHOICES = ("last", "best")
"""Which weights of a run a command takes: ``last``, its last checkpoint's (``model.safetensors``), or ``best``, those
of its best validation (``model-best.safetensors``, kept where the run validated)."""


def run_weights(run_dir: str | Path, weights: str = "last") -> Path:
    """The weights file of a run that ``weights`` (one of :data:`WEIGHT_CHOICES`) names; for ``best``, a
    ``FileNotFoundError`` saying why a run has none (it never validated, or was trained before they were kept)."""
    from .hub import WEIGHTS_NAME
    from .train import BEST_WEIGHTS_NAME, best_weights_of
    from .validation import with_cli_message

    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHT_CHOICES))}, got {weights!r}.")
    run_dir = Path(run_dir)
    if weights == "last":
        return run_dir / WEIGHTS_NAME
    path = run_dir / BEST_WEIGHTS_NAME
    best = best_weights_of(path)
    if best is None:
        held = " (a file of that name is there, but not best weights msrnn-zoo wrote)" if path.exists() else ""
        said = f"{run_dir} has no weights of a best validation ({BEST_WEIGHTS_NAME}){held}: a run keeps them only "
        raise with_cli_message(
            FileNotFoundError(f"{said}where it validated (val_every=N or early_stopping=N of its training), from its "
                              "first validation on; its last weights are used with weights='last' (the default)."),
            f"{said}where it validated (train --val-every N or --early-stopping), from its first validation on; its "
            "last weights are used without --weights best.")
    recorded = _recorded_best_step(run_dir)
    if recorded != best["step"]:  # a run killed between writing the two (latest.json first)
        named = f"the best at step {recorded}" if recorded is not None else "no best validation"
        said = (f"{path} holds the weights of the validation at step {best['step']}, but the run's record "
                f"(latest.json) names {named}: the run was stopped between writing the two (or a "
                "training of it writes them now). Resuming the run, ")
        goes_on = (" goes on from the checkpoint latest.json names and makes the best weights those that checkpoint "
                   "records (or leaves none until its next best validation, where that checkpoint is no longer kept).")
        raise with_cli_message(ValueError(f"{said}Trainer.resume({str(run_dir)!r}).fit(),{goes_on}"),
                               f"{said}`msrnn-zoo train --resume {shlex.quote(str(run_dir))}`,{goes_on}")
    return path


def _recorded_best_step(run_dir: Path) -> int | None:
    """The step of the best validation that the run's ``latest.json`` records (None: none, or no record to read)."""
    from .train import recorded_latest

    try:
        return int((recorded_latest(run_dir).get("best") or {})["step"])
    except (ValueError, KeyError, TypeError, OverflowError):  # (a hand-edited step of Infinity)
        return None


def metrics_name(split: str, weights: str = "last") -> str:
    """The metrics file ``evaluate`` writes in a run for ``split``: the best weights' apart from the last ones' (one
    would replace the other, and a card of the ones must not show the other's numbers)."""
    return f"metrics-{split}.json" if weights == "last" else f"metrics-{split}-{weights}.json"


def load_run(run_dir: str | Path, device: str | None = None,
             weights: str = "last") -> tuple[Forecaster, TrainConfig]:
    """The trained model of a run directory, on ``device`` (default: :func:`run_device`), and its configuration;
    ``weights="best"`` loads the weights of its best validation instead of its last ones (:func:`run_weights`)."""
    from .validation import parse_device, with_cli_message

    if weights not in WEIGHT_CHOICES:
        run_weights(run_dir, weights)  # the error naming the choices, before anything is read
    run_dir = Path(run_dir)
    if device is not None:
        parse_device(device, python="device")
    refuse_a_file_for_a_run(run_dir)
    if not run_dir.is_dir():
        from .hub import pulled_repo_note

        pulled = pulled_repo_note(run_dir)
        raise with_cli_message(
            FileNotFoundError(f"No run directory at {run_dir}; train one with Trainer.create({str(run_dir)!r}, cfg)."
                              f"{pulled}"),
            f"No run directory at {run_dir}; train one with `msrnn-zoo train ... --out {run_dir}`.{pulled}")
    if not (run_dir / TRAIN_CONFIG).is_file():
        said = f"{run_dir} ({run_dir.resolve()}) is not a run: it holds no {TRAIN_CONFIG}. Give the "
        raise with_cli_message(
            FileNotFoundError(f"{said}run_dir of an earlier Trainer.create (or `msrnn-zoo train`)."
                              f"{run_of_checkpoint(run_dir)}"),
            f"{said}--out directory of an earlier `msrnn-zoo train`.{run_of_checkpoint(run_dir)}")
    cfg = read_train_config(run_dir)
    device, note = run_device(cfg, device)
    parse_device(device)
    if note:
        warnings.warn(note, stacklevel=2)
    if not (run_dir / "model.safetensors").is_file():
        said = f"{run_dir} has no trained weights yet (model.safetensors); let training finish an epoch, or resume it"
        raise with_cli_message(
            FileNotFoundError(f"{said} with Trainer.resume({str(run_dir)!r}) and its fit()."),
            f"{said} with `msrnn-zoo train --resume {shlex.quote(str(run_dir))}`.")
    if weights == "best":
        from .hub import CONFIG_NAME

        model = Forecaster._from_files(run_dir / CONFIG_NAME, run_weights(run_dir, weights), None,
                                       map_location=device).to(device).eval()
    else:
        model = Forecaster.from_pretrained(run_dir, map_location=device).to(device).eval()
    return model, cfg


def baseline_frames(baseline: Baseline, clips: torch.Tensor, in_frames: int, out_frames: int,
                    frames: FrameMode) -> torch.Tensor:
    """A baseline's forecast under a frame mode: in ``all``, frame ``k`` of the context comes from frames < k."""
    context = clips[:, :in_frames]
    future = baseline(context, out_frames)
    if frames == "future":
        return future
    rebuilt = [baseline(clips[:, :k], 1) for k in range(1, in_frames)]
    return torch.cat([*rebuilt, future], dim=1)


class _Scorer:
    """Every accumulator one forecaster is scored with."""

    def __init__(self, physical: Callable[[], Any] | None, dataset_scores: Callable[[], Any] | None,
                 metrics: tuple[str, ...] = DEFAULT_METRICS) -> None:
        self.parts: list[Any] = [MetricAccumulator(metrics)]
        if physical is not None:
            self.parts.append(physical())
        if dataset_scores is not None:
            self.parts.append(dataset_scores())

    def update(self, pred: torch.Tensor, truth: torch.Tensor) -> None:
        for part in self.parts:
            part.update(pred, truth)

    def result(self) -> MetricReport:
        return merge([part.result() for part in self.parts])


RECORD_FROM_BATCHES = 10
"""Batches from which ``fast_path="auto"`` records the forecast on a GPU. Recording costs three eager forecasts
and a capture, about five forecasts' time on an H200, and then each forecast ran 2.3x to 19.6x faster than the
original's (README, "On a GPU, recorded clips")."""


def auto_fast_path(device: str | torch.device, batches: int) -> str | None:
    """What ``evaluate`` forecasts on by default: recorded clips (``"clip-graph"``, the eager path's numbers) on a
    GPU when there are enough batches to repay the recording, the eager path otherwise."""
    return "clip-graph" if torch.device(device).type == "cuda" and batches >= RECORD_FROM_BATCHES else None


@torch.no_grad()
def evaluate_run(run_dir: str | Path, *, split: str = "test", batch_size: int | None = None,
                 max_clips: int | None = None, device: str | None = None,
                 frames: FrameMode = "future", precision: str = "fp32",
                 fast_path: str | None = "auto", compile_cells: bool = False,
                 on_batch: Callable[[int, int], None] | None = None,
                 weights: str = "last") -> dict[str, MetricReport]:
    """Metrics of the run's model and of every baseline on the same clips of ``split``, model first.

    ``device`` defaults to the run's (see :func:`run_device`); ``precision`` ``bf16``/``fp16`` forecasts under
    autocast (faster on GPUs; the metrics then differ slightly from fp32's); ``fast_path`` is one of
    ``Forecaster.set_fast_path``'s, or ``"auto"`` (:func:`auto_fast_path`); ``compile_cells`` compiles each cell
    (``Forecaster.set_compile_cells``); ``on_batch(clips scored, clips in all)`` is called after each batch (a
    test split of thousands of clips takes minutes on a CPU); ``weights="best"`` scores the weights of the run's
    best validation (:func:`run_weights`) instead of its last ones. Frames smaller than SSIM's window (11x11) are scored
    without SSIM, which cannot be computed on them, rather than not at all.
    """
    if frames not in FRAME_MODES:
        raise ValueError(f"frames must be one of {', '.join(FRAME_MODES)}, got {frames!r}.")
    for name, value, unset in (("batch_size", batch_size, "the run's"), ("max_clips", max_clips, "the whole split")):
        # 0 was taken as unset (batch_size) or as a split of no clips, "prepare it from more raw files" (max_clips)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number of at least 1, or None for {unset}; got {value!r}.")
    check_precision(precision)
    model, cfg = load_run(run_dir, device, weights)
    device = str(model.embed.weight.device)
    if max_clips is not None:  # the limit open_split applies to this split: train's is not the eval splits'
        if split == "train":  # never beyond the clips the run trained on (--max-train-clips): those are no train
            cfg.max_train_clips = min(max_clips, cfg.max_train_clips or max_clips)
        else:
            cfg.max_eval_clips = max_clips
    check_run_data(cfg, Path(run_dir))
    dataset = open_split(cfg, split)
    if len(dataset) == 0:  # type: ignore[arg-type]  # e.g. a store prepared again, from fewer files, since training
        raise empty_split_error(cfg, split, "there is nothing to evaluate")
    shape, need = tuple(dataset[0].shape), cfg.in_frames + cfg.out_frames
    if len(shape) != 4 or shape[0] < need or shape[1] != model.config.in_channels:
        raise ValueError(f"The {split} clips of this run's data ({cfg.data or cfg.dataset}) have shape {shape} "
                         f"(T, C, H, W), but the run was trained on clips of at least {need} frames and "
                         f"{model.config.in_channels} channel(s): have they changed since? Evaluate on the data the "
                         "run was trained on.")
    loader = DataLoader(dataset, batch_size=batch_size or cfg.batch_size, shuffle=False)
    model.set_fast_path(auto_fast_path(device, len(loader)) if fast_path == "auto" else fast_path)
    model.set_compile_cells(compile_cells)
    baselines: dict[str, Baseline] = dict(BASELINES)
    physical = dataset_scores = None
    if cfg.dataset:
        from .datasets import to_physical
        from .registry import get_dataset

        entry = get_dataset(cfg.dataset)
        baselines.update(entry.capabilities.baselines)
        scaling = entry.info.scaling
        inverse = to_physical(cfg.dataset, cfg.root)
        if scaling is not None and inverse is not None:
            def physical() -> PhysicalErrorAccumulator:
                return PhysicalErrorAccumulator(inverse, scaling.unit, scaling.description)
        if entry.capabilities.scores is not None:
            context = ScoreContext(entry.info.protocol(cfg.protocol), cfg.in_frames, cfg.out_frames, frames,
                                   inverse, scaling.unit if scaling else "")
            hook = entry.capabilities.scores

            def dataset_scores() -> Any:
                return hook(context)
    small = shape[2] < SSIM_WINDOW or shape[3] < SSIM_WINDOW
    metrics = tuple(name for name in DEFAULT_METRICS if not (small and name == "ssim"))
    scorers = {name: _Scorer(physical, dataset_scores, metrics) for name in ("model", *baselines)}
    length = cfg.in_frames + cfg.out_frames
    scored, total = 0, len(dataset)  # type: ignore[arg-type]
    for clips in loader:
        clips = clips[:, :length].to(device)
        with autocast(precision, device):
            if frames == "future":
                truth = clips[:, cfg.in_frames:]
                forecast = model(clips[:, : cfg.in_frames], horizon=cfg.out_frames)
            else:
                truth = clips[:, 1:]
                mask = teacher_forcing(clips.shape[0], length, cfg.in_frames, 1.0, torch.Generator())
                forecast = model.forward_train(clips, mask.to(device))[0]
        scorers["model"].update(forecast.float().clamp(0, 1), truth)
        for name, baseline in baselines.items():
            scorers[name].update(baseline_frames(baseline, clips, cfg.in_frames, cfg.out_frames, frames), truth)
        scored += clips.shape[0]
        if on_batch is not None:
            on_batch(scored, total)
    return {name: scorer.result() for name, scorer in scorers.items()}


WEIGHTS_DIGEST = "weights_sha256"
"""The key of a metrics file that records the sha256 of the weights file it scored: a run trained on after
``evaluate`` holds other weights, and its card must not show the earlier ones' numbers."""


def reports_to_dict(reports: dict[str, MetricReport], run_dir: str | Path, split: str,
                    frames: FrameMode = "future", weights: str | Path | None = None,
                    precision: str = "fp32", cfg: TrainConfig | None = None) -> dict[str, Any]:
    """The metrics file: which frames were scored and in which ``precision`` (bf16's numbers are not fp32's, and a
    card must not give them as `evaluate`'s default), the forecasters in order, and each one's report (and, given
    the ``weights`` file that was scored, its digest). Given the run's ``cfg``, its ``written_by`` names the versions
    of the cell's and the dataset's plugins beside the zoo's, as the run's config.json does: their code scored it."""
    import hashlib

    from .io import file_hash
    from .versions import WRITTEN_BY, written_by

    data = {"run": str(run_dir), "split": split, "frames": frames, "frames_scored": FRAME_MODES[frames],
            "precision": precision,
            "forecasters": list(reports), **{name: rep.to_dict() for name, rep in reports.items()}}
    if weights is not None:
        from .train import BEST_WEIGHTS_NAME, best_weights_of

        data[WEIGHTS_DIGEST] = file_hash(Path(weights), hashlib.sha256())
        best = best_weights_of(Path(weights)) if Path(weights).name == BEST_WEIGHTS_NAME else None
        data["weights"] = "last" if best is None else "best"
        if best is not None:  # epoch counted from 0, as latest.json counts it
            data["best_validation"] = best
    data[WRITTEN_BY] = (written_by() if cfg is None else
                        written_by(cell=cfg.model_config.get("cell"), dataset=cfg.dataset))
    return data
