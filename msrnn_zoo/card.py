"""Model cards rendered from ``cards/model_card.md`` with huggingface_hub's ModelCard.

The YAML header is what the Hub indexes: ``library_name``, tags, license, the Hub ids of the data where
they exist, and a ``model-index`` whose results carry each metric's value with its convention (MSE summed
over a frame's pixels and MSE per pixel differ by a factor of 4096 on 64x64 frames). The body says what
the model is (cell, scale of every layer, size, cost), what it was trained on and how (the recipe and
the budget, if it was reproduced), the measured metrics frame by frame beside the baselines, a plot of
them and a forecast, how to load it, and what to cite. Nothing in a card names a local path: a card is
meant to be published.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .io import read_json
from .licenses import DEFAULT_LICENSE, check_license
from .registry import get_cell

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
METRICS_PNG = "metrics.png"
FORECAST_PNG = "forecast.png"
RECIPE_JSON = "recipe.json"
PROFILE_JSON = "profile.json"
CARD_METRICS = ("mse", "mae", "ssim", "psnr")
"""The metrics a card reports (the per-pixel variants stay in the metrics file)."""
PUBLISHED_DIGITS = 7
"""Significant digits of the values in the model-index (more than the card's tables show)."""
LOCAL_SOURCE = "path/to/this/folder"
NOT_SETTINGS = ("data_note", "description", "prepare", "metric_convention", "loss", "checkpoint", "download",
                "hub_datasets", "root_required")
"""Recipe entries that are prose or plumbing, shown elsewhere in the card or not at all."""


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def _series(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The scored series of a metrics file, the model first: ``{name: {metric: result}}``."""
    order = metrics.get("forecasters") or [k for k, v in metrics.items() if isinstance(v, dict) and "metrics" in v]
    order = sorted(order, key=lambda name: name != "model")
    return {name: metrics[name]["metrics"] for name in order if isinstance(metrics.get(name), dict)}


def metrics_table(metrics: dict[str, Any]) -> str:
    """A markdown table of the model's mean metrics beside each baseline's, each with its convention."""
    series = _series(metrics)
    model = series["model"]
    names = list(series)
    rows = ["| metric | " + " | ".join(names) + " | convention |", "|---|" + "---:|" * len(names) + "---|"]
    for name in _ordered(model):
        result = model[name]
        arrow = "↑" if result["higher_is_better"] else "↓"
        values = " | ".join(_fmt(series[s][name]["mean"]) if name in series[s] else "-" for s in names)
        rows.append(f"| {result['label']} {arrow} | {values} | {result['convention']} |")
    return "\n".join(rows)


def _ordered(model: dict[str, Any]) -> list[str]:
    """The card's four metrics first, then the rest (per-pixel variants, physical units, the dataset's own)."""
    return [n for n in CARD_METRICS if n in model] + [n for n in model if n not in CARD_METRICS]


def _frame_axis(metrics: dict[str, Any]) -> tuple[int, str]:
    """The number of the first scored frame and what the frames are: ``--frames all`` scores the clip's frames from
    2 on, input reconstructions included, which numbered from 1 as forecast frames would misname every row."""
    if _frames_scored(metrics) == "all":
        return 2, "frame of the clip"
    return 1, "forecast frame"


def per_frame_heading(metrics: dict[str, Any]) -> str:
    """The line above :func:`per_frame_table`."""
    first, axis = _frame_axis(metrics)
    return f"Per {axis} (from frame {first}, the first predicted; inputs included):" if first > 1 else \
        f"Per {axis}:"


def per_frame_table(metrics: dict[str, Any]) -> str:
    """The model's metrics at every scored frame, and each baseline's MSE beside them."""
    series = _series(metrics)
    model = series["model"]
    names = [n for n in CARD_METRICS if n in model]
    baselines = [s for s in series if s != "model" and "mse" in series[s]]
    first, _ = _frame_axis(metrics)
    header = ["frame", *(model[n]["label"] for n in names), *(f"MSE {b}" for b in baselines)]
    rows = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for t in range(len(model[names[0]]["per_frame"])):
        cells = [str(t + first), *(_fmt(model[n]["per_frame"][t]) for n in names),
                 *(_fmt(series[b]["mse"]["per_frame"][t]) for b in baselines)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def metric_panels(metrics: dict[str, Any]) -> list[Any]:
    from .plot import Panel

    series = _series(metrics)
    model = series["model"]
    first, axis = _frame_axis(metrics)
    panels = []
    for name in ("mse", "ssim"):
        if name in model:
            arrow = "higher is better" if model[name]["higher_is_better"] else "lower is better"
            curves = {s: series[s][name]["per_frame"] for s in series if name in series[s]}
            panels.append(Panel(f"{model[name]['label']} per {axis} ({arrow})", curves, first, axis))
    return panels


def _frames_scored(metrics: dict[str, Any]) -> str:
    """Which frames a metrics file scored: ``future`` (forecasts only) or ``all`` (every predicted frame)."""
    value = metrics.get("frames")
    return value if value in ("future", "all") else "future"



def card_repos(text: str) -> set[str]:
    """The repos a card's load lines (``pretrained="..."``) name."""
    return set(re.findall(r'pretrained="([^"]*)"', text))


def card_license(text: str) -> str | None:
    """The license id a card's YAML header names, if it is one msrnn-zoo writes (a Hub id other than ``other``);
    else None (no header, no license, or one a user wrote by hand)."""
    import yaml

    header = re.match(r"---\n(.*?)\n---\n", text, re.S)
    try:
        data = yaml.safe_load(header.group(1)) if header else None
        return check_license(data["license"]) if isinstance(data, dict) and "license" in data else None
    except (yaml.YAMLError, ValueError, TypeError):
        return None


def is_our_rendering(text: str, render: Callable[[str | None, str], str]) -> bool:
    """Whether ``text`` is msrnn-zoo's card as ``render(repo, license)`` makes it now, for the one repo its load lines
    name or for none, and the license its header names (``card --license`` chose it): such a card may be rendered
    again; anything else holds the user's words (edited, or written by hand), which ``push`` and ``reproduce
    --resume`` must not replace without a word."""
    named = card_repos(text)
    license = card_license(text)
    return license is not None and len(named) <= 1 and any(
        text == render(repo, license) for repo in dict.fromkeys((*named, None)))

def _published(value: float) -> float:
    """``value`` to the significant digits the model-index publishes: rounded to decimal places instead, a per-pixel
    MSE of 3e-7 was published as 0.0, and one of 0.000146 kept fewer digits than the card's own table."""
    return float(f"{value:.{PUBLISHED_DIGITS}g}")


def eval_results(metrics: dict[str, Any], dataset_type: str, dataset_name: str, dataset_config: str | None,
                 task_name: str) -> list[Any]:
    """The model's mean metrics as huggingface_hub EvalResults, each with its convention in metric_args, and the
    precision it was scored in beside the frames in its config when that is not fp32 (bf16's numbers are not fp32's,
    and would otherwise be ranked with them)."""
    from huggingface_hub import EvalResult

    model = _series(metrics)["model"]
    frames = _frames_scored(metrics)
    precision = metrics.get("precision", "fp32")  # files written before it was recorded were scored in fp32
    results = []
    for name in _ordered(model):
        result = model[name]
        if not math.isfinite(float(result["mean"])):
            continue  # the Hub's model-index takes numbers; the card's table still shows it
        results.append(EvalResult(
            task_type="video-prediction", task_name=task_name, dataset_type=dataset_type,
            dataset_name=dataset_name, dataset_config=dataset_config, dataset_split=metrics.get("split", "test"),
            metric_type=name, metric_name=result["label"], metric_value=_published(float(result["mean"])),
            metric_config=f"{frames} frames" + (f", {precision}" if precision != "fp32" else ""),
            metric_args={"convention": result["convention"], "frames": frames, "precision": precision,
                         "clips": int(metrics["model"].get("samples", 0)),
                         "higher_is_better": bool(result["higher_is_better"])}))
    return results


def _public_config(cfg: Any) -> dict[str, Any]:
    """The training config without anything that names a place on this machine."""
    data = dict(cfg.__dict__)
    if data.get("data"):
        data["data"] = Path(str(data["data"])).name
    if data.get("root"):
        data["root"] = f"DATA/{cfg.dataset or 'root'}"  # where the user keeps it is theirs
    options = {k: v for k, v in (data.get("dataset_options") or {}).items()
               if not (isinstance(v, str) and (os.path.isabs(v) or os.sep in v or k == "root"))}
    data["dataset_options"] = options
    data.pop("device", None)
    return data


def _recipe_dataset(dataset: str | None) -> dict[str, Any]:
    from .catalogue import recipe_tables

    return dict(recipe_tables()["datasets"].get(dataset or "", {}))


def _schedule_text(model: Any) -> str:
    return "multi-scale" if len(set(model.levels)) > 1 else "single-scale"


def _common(model: Any, repo_id: str | None) -> dict[str, Any]:
    from .catalogue import paper

    config = model.config
    cell = get_cell(config.cell)
    info = paper()
    return dict(
        model_name=_model_name(model), cell=config.cell,
        cell_paper=cell.paper or "see its plugin", schedule=model.schedule.describe(),
        schedule_text=_schedule_text(model), num_layers=config.num_layers, hidden_channels=config.hidden_channels,
        kernel_size=config.kernel_size, in_channels=config.in_channels,
        cell_options=json.dumps(config.cell_options) if config.cell_options else "none",
        parameters=f"{sum(p.numel() for p in model.parameters()):,}", arxiv=info["arxiv"], bibtex=info["bibtex"],
        load_source=repo_id or LOCAL_SOURCE)


def _model_name(model: Any) -> str:
    """The zoo name of a model (``ms-convlstm``) from its config."""
    from .registry import registry

    for name, entry in registry().models.items():
        if entry.cell == model.config.cell and entry.schedule == model.config.schedule:
            return name
    return model.config.cell


def _card(card_data: Any, **values: Any) -> str:
    from huggingface_hub import ModelCard

    defaults = dict(dataset=None, budget_note=None, layer_sizes=None, flops=None, training_memory=None,
                    metrics_table=None, forecast_png=False, out_frames=None, frame_size=None)
    card = ModelCard.from_template(card_data, template_path=str(TEMPLATE), **{**defaults, **values})
    return str(card)


def render_model_card(model: Any, repo_id: str | None, license: str = DEFAULT_LICENSE) -> str:
    """The card of a model saved from Python: what it is and how to load it (no training is recorded). ``license``
    is the Hub license id its header claims for the weights."""
    from huggingface_hub import ModelCardData

    license = check_license(license)
    values = _common(model, repo_id)
    card_data = ModelCardData(library_name="msrnn-zoo", license=license,
                              tags=["video-prediction", "spatiotemporal", "msrnn-zoo", model.config.cell,
                                    values["schedule_text"]])
    return _card(card_data, **values)


def _memory_text(profile: dict[str, Any]) -> str | None:
    memory = profile.get("training_memory")
    if not memory:
        return None
    text = (f"{memory['activation_bytes'] / 2**20:.1f} MiB of activations kept for the backward pass per training "
            f"step (batch {memory['batch']}, {memory['frames']} frames; counted exactly with autograd's "
            "saved-tensor hooks)")
    if memory.get("peak_cuda_bytes"):
        text += f"; {memory['peak_cuda_bytes'] / 2**30:.2f} GiB peak CUDA memory while training"
    return text


def render_card(run_dir: str | Path, repo_id: str | None, split: str = "test", license: str = DEFAULT_LICENSE,
                weights: str = "last") -> str:
    """The model card of a trained run; ``repo_id`` is the Hub repo it will be pushed to (None: local), ``license``
    the Hub license id its header claims for the weights (the data's own terms are quoted in its text), ``weights``
    which of the run's weights it shows (``best``: its best validation's, with their own metrics file)."""
    from huggingface_hub import ModelCardData

    from .evaluate import load_run, metrics_name
    from .profile import flops_per_frame, flops_unit
    from .train import being_trained

    license = check_license(license)  # before the run is loaded and measured
    run_dir = Path(run_dir)
    if being_trained(run_dir):  # its weights, latest.json and metrics may each be of another step than the others
        raise ValueError(f"{run_dir} is being trained right now: its weights and checkpoint pointer may be replaced "
                         "while its card is written (or the model pushed), and the card would describe another "
                         "model than the one published. Wait for training to end (or stop it), evaluate the run "
                         "again, then make its card.")
    model, cfg = load_run(run_dir, "cpu", weights)
    config = model.config
    metrics_path = run_dir / metrics_name(split, weights)
    metrics = read_json(metrics_path, "metrics file") if metrics_path.is_file() else None
    if metrics is not None:
        _check_metrics_scored_these_weights(run_dir, metrics_path, metrics, split, weights)
    recipe = read_json(run_dir / RECIPE_JSON, "recipe file") if (run_dir / RECIPE_JSON).is_file() else None
    profile = read_json(run_dir / PROFILE_JSON, "profile file") if (run_dir / PROFILE_JSON).is_file() else {}
    latest = read_json(run_dir / "latest.json", "checkpoint pointer") if (run_dir / "latest.json").is_file() else {}
    public = _public_config(cfg)

    values = _common(model, repo_id)
    values["model_name"] = cfg.model
    height, width = _frame_size(cfg, profile)
    frame_size = f"{height}x{width}" if height and width else None
    recipe_dataset = _recipe_dataset(cfg.dataset)
    source, protocol = _run_data(cfg)
    hub_datasets = list((recipe_dataset.get("hub_datasets") or {}).get(source or "", []))
    if cfg.dataset:
        dataset_label = f"{cfg.dataset} ({', '.join(x for x in (source, protocol) if x)})"
    else:
        dataset_label = f"own clips ({public['data']})"
    flops = profile.get("flops_per_frame")
    if flops is None and height and width:
        flops = flops_per_frame(model, height, width)
    if "training_memory" not in profile and height and width:  # a run made by `train`: count it now, as reproduce does
        from .profile import training_memory

        frames = cfg.in_frames + cfg.out_frames
        profile = {**profile, "training_memory": {
            "activation_bytes": training_memory(model, cfg.batch_size, frames, height, width),
            "batch": cfg.batch_size, "frames": frames}}
    values.update(
        dataset=dataset_label, in_frames=cfg.in_frames, out_frames=cfg.out_frames, frame_size=frame_size,
        layer_sizes=", ".join(f"{h}x{w}" for h, w in model.schedule.sizes(height, width)) if height and width else None,
        flops=f"{flops / flops_unit(flops)[0]:.3f} {flops_unit(flops)[1]}FLOPs (2 per multiply-add), one frame in and "
              "one forecast out" if flops else None,
        training_memory=_memory_text(profile))
    values["data_text"] = _data_text(cfg, recipe_dataset, source, protocol, hub_datasets, metrics, public)
    values["training_text"], values["budget_note"] = _training_text(cfg, recipe, latest, public, run_dir)
    if weights == "best":  # the card says which weights it shows: the run's last ones are the default
        from .evaluate import run_weights
        from .train import best_weights_of

        best = best_weights_of(run_weights(run_dir, weights)) or {}
        shown = (f"These are the weights of the best validation, epoch {best.get('epoch', 0) + 1} (step "
                 f"{best.get('step')}, validation loss {best.get('val_loss', float('nan')):.4f}), not those of the "
                 "last step trained.")
        values["training_text"] = f"{shown}\n\n{values['training_text']}"
        if values["budget_note"]:
            values["budget_note"] = values["budget_note"].replace("these are the weights of step", "its last step was")
    tags = ["video-prediction", "spatiotemporal", "msrnn-zoo", config.cell, values["schedule_text"]]
    if cfg.dataset:
        tags.append(cfg.dataset)
    eval_list = None
    if metrics is not None:
        frames_scored = _frames_scored(metrics)
        precision = metrics.get("precision", "fp32")  # files written before it was recorded were scored in fp32
        under = f" --precision {precision}" if precision != "fp32" else ""
        values.update(
            metrics_table=metrics_table(metrics), per_frame_table=per_frame_table(metrics),
            per_frame_heading=per_frame_heading(metrics),
            forecast_png=True,
            evaluation_text=(f"Measured with `msrnn-zoo evaluate --frames {frames_scored}{under}` on "
                             f"{metrics['model']['samples']} clips of the {metrics.get('split', split)} split, scoring "
                             f"{metrics.get('frames_scored') or 'the forecast frames'}, beside baselines that need "
                             "no training. Means over the frames here, a row per frame below."))
        task = f"video prediction, {cfg.in_frames} -> {cfg.out_frames} frames"
        # the clips scored are the zoo's dataset cut by its protocol, not the Hub dataset they were made from (Moving
        # MNIST's test clips hold MNIST training digits: "ylecun/mnist, split test" named data never scored); the
        # source is in the config, since the sources of a dataset are different data (glyphs drawn, MNIST digits)
        eval_list = eval_results(metrics, cfg.dataset or "own-clips", dataset_label,
                                 "-".join(x for x in (source, protocol) if x) or None, task) or None  # none finite
    model_index_name = repo_id.split("/")[-1] if repo_id else cfg.model
    card_data = ModelCardData(library_name="msrnn-zoo", license=license, tags=tags,
                              datasets=hub_datasets or None, model_name=model_index_name if eval_list else None,
                              eval_results=eval_list)
    return _card(card_data, **values)


def _check_metrics_scored_these_weights(run_dir: Path, metrics_path: Path, metrics: dict[str, Any],
                                        split: str, weights: str = "last") -> None:
    """Refuse metrics of other weights than the run's ``weights`` file holds now (it was trained on, with --resume,
    after ``evaluate``; the metrics are of its last weights and the card of its best): the card, and the metrics
    pushed beside it, would show another model's numbers. A metrics file written before the digest was recorded
    cannot be told apart, and is taken as it is for the last weights; best weights came after the digest, so
    their metrics must carry it."""
    import hashlib
    import shlex

    from .evaluate import WEIGHTS_DIGEST, run_weights
    from .io import file_hash

    recorded = metrics.get(WEIGHTS_DIGEST)
    path = run_weights(run_dir, weights)
    if (recorded is None and weights == "last") or recorded == file_hash(path, hashlib.sha256()):
        return
    again = shlex.join(["msrnn-zoo", "evaluate", str(run_dir), *(["--split", split] if split != "test" else []),
                        *(["--weights", weights] if weights != "last" else []), "--force"])
    raise ValueError(f"{metrics_path} scored other weights than {path} holds now (was the run trained on after "
                     f"`msrnn-zoo evaluate`?): its card would show another model's numbers. Score the run again "
                     f"first: {again}")


def _run_data(cfg: Any) -> tuple[str | None, str | None]:
    """The source and protocol a run's clips came from: the dataset's defaults where the run named none (as
    ``load_dataset`` reads them). The recipe's source is not the dataset's default (Moving MNIST's recipe generates
    clips from MNIST digits, its default source draws glyphs), so taking it published a run on drawn glyphs as one
    on MNIST, under MNIST's Hub id. ``(None, None)`` for the user's own clips."""
    if not cfg.dataset:
        return None, None
    from .registry import get_dataset

    try:
        info = get_dataset(cfg.dataset).info
    except ValueError:  # its plugin is not installed here: only what the run recorded is known
        return cfg.source, cfg.protocol
    return cfg.source or info.default_source, cfg.protocol or info.default_protocol


def _frame_size(cfg: Any, profile: dict[str, Any]) -> tuple[int | None, int | None]:
    """The size the card states: the profile's, else the run's own test clips, else unknown (no data here)."""
    if profile.get("frame_size"):
        h, w = profile["frame_size"]
        return int(h), int(w)
    try:  # the run's own clips say it best (a protocol, or the user's file)
        from .train import open_split

        clip = open_split(cfg, "test")[0]
        return int(clip.shape[-2]), int(clip.shape[-1])
    except (ValueError, OSError, IndexError):
        return None, None


def _data_text(cfg: Any, recipe_dataset: dict[str, Any], source: str | None, protocol: str | None,
               hub_datasets: list[str], metrics: dict[str, Any] | None, public: dict[str, Any]) -> str:
    if not cfg.dataset:
        return (f"The user's own clips (`{public['data']}`), split {public['split_fractions']} into train, "
                "validation and test in file order.")
    # the recipe's prose describes the recipe's protocol (Moving MNIST's "64x64 box", 10 -> 10): a run on another one
    # (`small`: 32x32, 5 -> 5) is described by its own protocol, as its plugin declares it
    of_recipe = protocol == recipe_dataset.get("protocol", protocol)
    description = recipe_dataset.get("description") if of_recipe else _protocol_text(cfg.dataset, protocol)
    lines = [f"**{cfg.dataset}**" + (f": {description.rstrip('.')}" if description else "")
             + f". Source `{source}`" + (f", protocol `{protocol}`" if protocol else "") + "."]
    if hub_datasets:
        lines.append("On the Hub: " + ", ".join(f"[{d}](https://huggingface.co/datasets/{d})" for d in hub_datasets)
                     + ".")
    if recipe_dataset.get("data_note") and of_recipe and source == recipe_dataset.get("source"):
        lines.append(recipe_dataset["data_note"])
    terms = _data_terms(cfg.dataset)
    if terms:  # the license in the header is the one chosen for the weights; the data's own terms still hold
        lines.append(f"The data has its own terms, apart from the license in this card's header. As the {cfg.dataset} "
                     f"plugin states them: {terms.rstrip('.')}.")
    limits = []
    if cfg.max_train_clips:
        limits.append(f"the first {cfg.max_train_clips} training clips")
    if cfg.max_eval_clips or metrics:
        clips = metrics["model"]["samples"] if metrics else cfg.max_eval_clips
        limits.append(f"{clips} {metrics.get('split', 'test') if metrics else 'test'} clips")  # scores of its split
    if limits:
        lines.append("This run used " + " and ".join(limits) + ".")
    return "\n\n".join(lines)


def _data_terms(dataset: str) -> str | None:
    """The terms of a zoo dataset as its plugin's DatasetInfo states them; None where it states none, or where its
    plugin is not installed here."""
    from .registry import get_dataset

    try:
        return get_dataset(dataset).info.license.strip() or None
    except ValueError:
        return None


def _protocol_text(dataset: str, protocol: str | None) -> str | None:
    """What the dataset's plugin says of ``protocol`` and its clip geometry; None where its plugin is not installed
    here (the card then names the protocol alone rather than another protocol's description)."""
    from .registry import get_dataset

    try:
        clips = get_dataset(dataset).info.protocol(protocol)
    except ValueError:
        return None
    return (f"{clips.description.rstrip('.')} ({clips.in_frames} -> {clips.out_frames} frames of "
            f"{clips.height}x{clips.width})")


def _training_text(cfg: Any, recipe: dict[str, Any] | None, latest: dict[str, Any],
                   public: dict[str, Any], run_dir: Path) -> tuple[str, str | None]:
    from .train import validations_since_best

    steps = latest.get("step")
    done = f"{steps} optimizer steps" if steps is not None else "an unknown number of steps"
    epochs_done = latest.get("epoch")
    # a run stopped (Ctrl-C, a kill) before its planned epochs: its weights are the latest checkpoint's, and a card
    # saying "2 epoch(s) = 10 optimizer steps" would publish the plan as what was trained
    stopped = (f"Training stopped before its end: these are the weights of step {steps}, with {epochs_done} of the "
               f"{cfg.epochs} planned epoch(s) completed." if isinstance(epochs_done, int) and epochs_done < cfg.epochs
               else None)
    ended = ""
    stale = validations_since_best(run_dir, steps) if stopped and cfg.early_stopping and isinstance(steps, int) else 0
    if stale and stale >= cfg.early_stopping:  # not stopped by a user: ended by early stopping, which says why
        best = latest.get("best") or {}
        said = (f"best {best['val_loss']:.4f} after epoch {best['epoch'] + 1}, step {best['step']}" if
                isinstance(best.get("val_loss"), (int, float)) and isinstance(best.get("epoch"), int) else
                "no validation loss was finite")
        stopped = (f"Early stopping ended training after epoch {epochs_done} of the {cfg.epochs} planned: the "
                   f"validation loss had not improved in {stale} validation(s) (patience {cfg.early_stopping}; "
                   f"{said}); these are the weights of step {steps}, where it ended.")
        ended = " (ended by early stopping)"
    trained = (f"{epochs_done} of {cfg.epochs} epoch(s) completed{ended}, {done}" if stopped else
               f"{cfg.epochs} epoch(s) = {done}")
    summary = (f"Adam, lr {cfg.lr}, batch {cfg.batch_size}, {trained}, seed {cfg.seed}, input "
               f"schedule `{cfg.sampling or 'the cell default'}`; loss MSE + MAE summed over the pixels of a frame "
               "(+ the cell's auxiliary loss).")
    config_line = f"Training config: `{json.dumps(public, default=str, sort_keys=True)}`"
    if recipe is None:
        return f"{summary}\n\n{config_line}", stopped
    budget = recipe.get("budget") or {}
    deviations = recipe.get("deviations") or {}
    rows = ["| setting | value | source |", "|---|---|---|"]
    for key, value in recipe["settings"].items():
        if key in NOT_SETTINGS:
            continue
        shown = value if isinstance(value, str) else json.dumps(value)
        if key in deviations:
            used = deviations[key]["used"]
            shown = f"**{used if isinstance(used, str) else json.dumps(used)}** (recipe: {shown})"
        rows.append(f"| {key} | {shown} | {recipe['sources'].get(key, '')} |")
    text = (f"Trained by the recipe `{recipe['recipe']}` (`{recipe['command']}`), the settings of the MS-RNN paper "
            f"as its code ran them (github.com/mazhf/MS-RNN at {recipe.get('code_commit', '')[:7]}):\n\n"
            + "\n".join(rows) + f"\n\nLoss: {recipe['settings'].get('loss', '')}. Metrics: "
            f"{recipe['settings'].get('metric_convention', '')}.\n\n{summary}\n\n{config_line}")
    note = None
    if deviations:
        changed = ", ".join(f"{k} {v['used']} (recipe: {v['recipe']})" for k, v in deviations.items())
        note = f"Deviates from the recipe: {changed}."
    if budget.get("limited"):
        limited = (f"Budget-limited: trained {budget['steps']} steps ({budget['epochs']} epoch(s) over "
                   f"{budget['train_clips']} clips) of the recipe's {budget['recipe_steps']} "
                   f"({budget['recipe_epochs']} epochs over {budget['recipe_train_clips']} clips).")
        note = f"{note} {limited}" if note else limited
    if note:
        note += " Its numbers show what this run reaches, not the paper's setting."
    if stopped:
        note = f"{stopped} {note}" if note else stopped
    return text, note


def write_card(run_dir: str | Path, card_path: str | Path, repo_id: str | None, split: str = "test",
               force: bool = True, license: str = DEFAULT_LICENSE, weights: str = "last") -> dict[str, Path]:
    """Render the card of a run to ``card_path``, with the pictures it shows beside it: ``{name in repo: path}``.

    The pictures are ``metrics.png`` and ``forecast.png`` in the card's folder (the card links them by those
    names). Without ``force`` none of the three files may exist yet; with it, exactly those are replaced.
    """
    from .io import refuse_overwrite, write_text

    run_dir, card_path = Path(run_dir), Path(card_path)
    # the card was written, then the picture of that name over it (casefolded: one file on macOS and Windows)
    if card_path.name.casefold() in (METRICS_PNG, FORECAST_PNG):
        raise ValueError(f"{card_path} is where the card's picture {card_path.name.lower()} goes ({METRICS_PNG} and "
                         f"{FORECAST_PNG} are written beside the card), so the picture would replace the card. Name "
                         f"the card another file, e.g. {card_path.with_name('README.md')}.")
    from .evaluate import metrics_name

    metrics_path = run_dir / metrics_name(split, weights)
    folder = card_path.parent
    targets = [card_path] + ([folder / METRICS_PNG, folder / FORECAST_PNG] if metrics_path.is_file() else [])
    # first: a folder that is no run (or a license the Hub does not know) is told so, not to add --force
    text = render_card(run_dir, repo_id, split, license, weights)
    for target in targets:
        refuse_overwrite(target, force, "model card" if target == card_path else "picture")
    folder.mkdir(parents=True, exist_ok=True)
    files = {"README.md": write_text(card_path, text)}
    if metrics_path.is_file():
        from .plot import save_metric_chart

        files[METRICS_PNG] = save_metric_chart(folder / METRICS_PNG, metric_panels(read_json(metrics_path, "metrics")))
        from .forecast import save_forecast_png

        files[FORECAST_PNG] = save_forecast_png(run_dir, folder / FORECAST_PNG, weights=weights)
    return files
