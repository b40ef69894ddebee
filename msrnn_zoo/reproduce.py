"""From a recipe to a card: train a model by the paper's settings, evaluate it, measure it, describe it.

``msrnn-zoo reproduce MODEL DATASET --out RUN`` is this module. The run directory it leaves is an ordinary
run (``train --resume``, ``evaluate``, ``predict`` and ``push`` work on it) plus ``recipe.json`` (the
settings, where each comes from, and the budget), ``profile.json`` (parameters, FLOPs, training memory),
``metrics-test.json``, and the card with its pictures (``README.md``, ``metrics.png``, ``forecast.png``).

A smaller ``budget_steps`` keeps the recipe's shape -- the same model, data, optimizer and loss, and the
whole input schedule from teacher forcing to free running -- over fewer steps and training clips, and the
card says so in its first lines. PredRNN-V2's reverse schedule moves once an epoch, as the original's: a
budget of one or two epochs starts it past its first third (one epoch: the end of the schedule throughout).
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .card import PROFILE_JSON, RECIPE_JSON, write_card
from .catalogue import Recipe, get_recipe, paper
from .io import RUN_MARKER, OverwriteRefusedError, read_json, write_json
from .licenses import DEFAULT_LICENSE, check_license
from .validation import MAX_SEED, with_cli_message

MODEL_OPTIONS = ("hidden_channels", "num_layers", "kernel_size")
OVERRIDABLE = (*MODEL_OPTIONS, "lr", "batch_size", "seed", "epochs", "sampling")
"""Recipe settings a user may change (``--set KEY=VALUE``); the card lists every change beside the recipe's value."""


def check_overrides(overrides: dict[str, Any]) -> None:
    """Refuse a ``--set`` value that train's own option would refuse (``--batch-size``, ``--seed``...), before any
    data is fetched: ``batch_size=0`` was a ZeroDivisionError in planning, ``seed=-1`` a run train never makes."""
    from .sampling import SCHEDULES

    for key, value in overrides.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        whole = number and isinstance(value, int)
        if key in ("hidden_channels", "num_layers", "kernel_size", "batch_size", "epochs"):
            ok, rule = whole and value >= 1, "a whole number of at least 1"
        elif key == "seed":
            ok, rule = whole and 0 <= value <= MAX_SEED, f"a whole number from 0 to {MAX_SEED}"
        elif key == "lr":
            ok, rule = number and math.isfinite(value) and value > 0, "a finite number above 0, such as 3e-4"
        elif key == "sampling":
            ok = value is None or value in SCHEDULES
            rule = f"one of {', '.join(SCHEDULES)} (or {{none}}: the cell's own)"
        else:
            continue  # make_plan names what --set cannot change
        if not ok:  # (the Python caller gave overrides=, the command line --set KEY=JSON)
            raise with_cli_message(
                ValueError(f"overrides={{{key!r}: {value!r}}}: {key} must be {rule.format(none='None')}."),
                f"--set {key}={json.dumps(value, default=str)}: {key} must be {rule.format(none='null')}.")


@dataclass
class Plan:
    """What a reproduction will run: the recipe, the training config, and how the budget shaped it."""

    recipe: Recipe
    cfg: Any
    budget: dict[str, Any]
    command: str
    deviations: dict[str, dict[str, Any]]


def make_plan(model: str, dataset: str, *, root: str | Path | None = None, source: str | None = None,
              budget_steps: int | None = None, device: str = "cpu", overrides: dict[str, Any] | None = None,
              out: str | Path | None = None) -> Plan:
    """Compose the recipe and turn it into a training config, shrunk to ``budget_steps`` if that is smaller.

    ``overrides`` change recipe settings (those in :data:`OVERRIDABLE`); they are recorded as deviations.
    """
    from .factory import build_config, from_config
    from .registry import get_dataset
    from .train import new_train_config, open_split
    from .validation import parse_device

    recipe = get_recipe(model, dataset)
    overrides = dict(overrides or {})
    bad = sorted(set(overrides) - set(OVERRIDABLE))
    if bad:
        said = f" cannot change {', '.join(bad)}; it can change {', '.join(OVERRIDABLE)}."
        raise with_cli_message(ValueError(f"overrides{said}"), f"--set{said}")
    check_overrides(overrides)
    deviations = {k: {"recipe": recipe.get(k), "used": v} for k, v in overrides.items() if recipe.get(k) != v}
    recipe = Recipe(recipe.model, recipe.dataset, {**recipe.settings, **overrides}, recipe.sources)
    try:
        get_dataset(dataset)
    except ValueError:
        said = (f"The recipe {recipe.key} trains on {dataset!r}, but no installed plugin registers that dataset; "
                "install its plugin (see {}).")
        raise with_cli_message(ValueError(said.format("msrnn_zoo.plugins.records()")),
                               said.format("`msrnn-zoo plugins`")) from None
    if recipe.get("root_required") and root is None:
        from .store import prepare_call

        said = f"The recipe {recipe.key} reads a prepared {dataset} store: pass "
        raise with_cli_message(  # the recipe's `prepare` is the command: a Python caller is shown the function
            ValueError(f"{said}root=DIR (prepare it first: {prepare_call(dataset, 'DIR')})."),
            f"{said}--root DIR (prepare it first: {recipe.get('prepare') or 'see the dataset plugin README'}).")
    if budget_steps is not None and budget_steps < 1:
        said = f" must be at least 1, got {budget_steps}."
        raise with_cli_message(ValueError(f"budget_steps{said}"), f"--budget-steps{said}")
    options = {k: recipe[k] for k in MODEL_OPTIONS}
    options.update(recipe.get("options") or {})
    if source and recipe.get("source") and source != recipe["source"]:
        deviations["source"] = {"recipe": recipe["source"], "used": source}
    source = source or recipe.get("source")
    processes = distributed.from_env().world_size
    if recipe["batch_size"] % processes:
        said = (f"The recipe's batch of {recipe['batch_size']} clips does not split evenly over torchrun's "
                f"{processes} processes; start a number of processes that divides it, or {{}} to a multiple of "
                f"{processes} (a deviation the card records).")
        raise with_cli_message(ValueError(said.format("set batch_size in overrides")), said.format("--set batch_size"))
    base = dict(dataset=dataset, source=source, in_frames=recipe["in_frames"], out_frames=recipe["out_frames"],
                # under torchrun each process takes its share of the recipe's batch: the same steps as one process
                epochs=recipe["epochs"], batch_size=recipe["batch_size"] // processes, lr=recipe["lr"],
                weight_decay=recipe.get("weight_decay", 0.0), seed=recipe["seed"],
                sampling=recipe.get("sampling"), device=device,
                root=str(Path(root).expanduser().resolve()) if root is not None else None,
                protocol=recipe.get("protocol"),
                val_every=0)  # the recipe's training alone, in the time it takes (`train --val-every` validates)
    # what the trainer would refuse only when it builds the model, after the recipe's data were downloaded and
    # the plan announced: `--set num_layers=5` of a multi-scale model, `--set kernel_size=2`, `--device gpu`
    parse_device(device)
    from_config(build_config(model, **options, in_channels=1))
    if recipe.get("download"):  # fetch what the source needs once, with a progress bar, before training
        from .datasets import load_dataset

        for split in ("train", "test"):
            load_dataset(dataset, split=split, source=source, root=base["root"], download=True,
                         protocol=base["protocol"])
    probe = new_train_config(model, model_options={**options, "in_channels": 1}, **base)
    train_set = open_split(probe, "train")
    clips = len(train_set)  # type: ignore[arg-type]
    channels = int(train_set[0].shape[1])
    per_epoch = clips // recipe["batch_size"]
    if per_epoch == 0:
        raise ValueError(f"The {dataset} training split has {clips} clips, fewer than one batch of "
                         f"{recipe['batch_size']}.")
    full = per_epoch * recipe["epochs"]
    budget = {"limited": False, "steps": full, "epochs": recipe["epochs"], "train_clips": clips,
              "recipe_steps": full, "recipe_epochs": recipe["epochs"], "recipe_train_clips": clips}
    if budget_steps is not None and budget_steps < full:
        epochs = math.ceil(budget_steps / per_epoch)
        steps_per_epoch = budget_steps // epochs
        base["epochs"] = epochs
        base["max_train_clips"] = steps_per_epoch * recipe["batch_size"]
        budget.update(limited=True, steps=steps_per_epoch * epochs, epochs=epochs,
                      train_clips=base["max_train_clips"])
    cfg = new_train_config(model, model_options={**options, "in_channels": channels}, **base)
    parts = ["msrnn-zoo", "reproduce", model, dataset]
    if root is not None:
        parts += ["--root", f"DATA/{dataset}"]  # the card never names a local path
    if source and source != recipe.get("source"):
        parts += ["--source", source]
    for key, change in deviations.items():
        if key != "source":
            parts += ["--set", f"{key}={change['used']}"]
    if budget["limited"]:
        parts += ["--budget-steps", str(budget_steps)]
    if device != "cpu":
        parts += ["--device", device]
    parts += ["--out", Path(out).name if out is not None else recipe.run_dir()]
    return Plan(get_recipe(model, dataset), cfg, budget, shlex.join(parts), deviations)


def measure(model: Any, cfg: Any, height: int, width: int, peak_cuda: int | None = None) -> dict[str, Any]:
    """Parameters, FLOPs per frame, and the activations one training step keeps for its backward pass."""
    from .profile import flops_per_frame, training_memory

    frames = cfg.in_frames + cfg.out_frames
    memory = {"activation_bytes": training_memory(model, cfg.batch_size, frames, height, width),
              "batch": cfg.batch_size, "frames": frames}
    if peak_cuda:
        memory["peak_cuda_bytes"] = peak_cuda
    return {"parameters": sum(p.numel() for p in model.parameters()), "frame_size": [height, width],
            "flops_per_frame": flops_per_frame(model, height, width), "training_memory": memory}


CARD_LICENSE = "card_license"
"""The key of ``recipe.json`` that keeps the license chosen for the card: ``reproduce --resume`` of a reproduction
stopped before its card was written renders it under that license, not the default."""


def start(plan: Plan, out: str | Path, *, force: bool = False, license: str = DEFAULT_LICENSE) -> Any:
    """Create the run directory and its trainer, with ``recipe.json`` written before the first step (with the
    ``license`` its card will claim)."""
    license = check_license(license)
    from .train import Trainer

    trainer = Trainer.create(out, plan.cfg, force=force)
    if not trainer.dist.is_main:  # under torchrun, rank 0 writes the run
        return trainer
    # into the trainer's directory: with force, the new run is built beside the old one, which stays whole
    write_json(trainer.run_dir / RECIPE_JSON, {"recipe": plan.recipe.key, "settings": plan.recipe.settings,
                                        "sources": plan.recipe.sources, "budget": plan.budget,
                                        "deviations": plan.deviations,
                                        "command": plan.command, "code_commit": paper()["code_commit"],
                                        CARD_LICENSE: license})
    return trainer


def check_out(out: str | Path, force: bool = False) -> bool:
    """``check_run_dir`` for a reproduction: whether ``out`` is replaced (only with ``force``), else why not.

    A reproduction already in ``out`` is continued with ``reproduce --resume``, which trains what is left and
    then scores the run and writes its card; ``train --resume``, which ``check_run_dir`` suggests for any run,
    would leave it without its card."""
    from .train import check_run_dir

    out = Path(out)
    if not force and (out / RECIPE_JSON).is_file() and (out / RUN_MARKER).is_file():
        raise OverwriteRefusedError(
            f"{out} holds a reproduction already; ",
            python_hint=f"continue it with reproduce.resume({str(out)!r}), choose another directory for the new "
                        "one, or pass force=True to replace it.",
            cli_hint=f"continue it with `msrnn-zoo reproduce --resume {shlex.quote(str(out))}`, choose another "
                     "--out for the new one, or pass --force to replace it.")
    return check_run_dir(out, force)


def _check_max_eval_clips(max_eval_clips: int | None) -> None:
    """Refuse a clip count that evaluation would reject only after the whole training run."""
    if max_eval_clips is not None and (isinstance(max_eval_clips, bool) or not isinstance(max_eval_clips, int)
                                       or max_eval_clips < 1):
        raise ValueError(f"max_eval_clips must be a whole number of at least 1 (or None for every test clip), "
                         f"got {max_eval_clips!r}.")


def finish(trainer: Any, *, device: str = "cpu", max_eval_clips: int | None = None,
           report: Callable[[dict[str, Any]], None] | None = None, license: str | None = None) -> dict[str, Path]:
    """After training: measure the model, evaluate it on the test split, render the card and its pictures, under
    ``license`` (None: the one the reproduction was started with, else the default).

    Under torchrun only rank 0 does this (the others return no files): one process scores the run and writes it."""
    from .evaluate import evaluate_run, load_run, reports_to_dict

    if not trainer.dist.is_main:
        return {}
    run_dir = trainer.run_dir
    peak = torch.cuda.max_memory_allocated(trainer.device) if trainer.device.type == "cuda" else None
    model, cfg = load_run(run_dir, "cpu")
    clip = trainer.train_set[0]
    write_json(run_dir / PROFILE_JSON, measure(model.train(), cfg, int(clip.shape[-2]), int(clip.shape[-1]), peak))
    recipe = read_json(run_dir / RECIPE_JSON, "recipe file")
    frames = recipe["settings"].get("eval_frames", "future")
    words = shlex.split(recipe.get("command", ""))
    # the card's command must score what the card's metrics scored: the first N test clips, or every one. A count
    # from an earlier scoring stays out: `reproduce --resume` of a finished run scores it again, and the card
    # said `--max-eval-clips 2` of metrics over every test clip
    if "--max-eval-clips" in words:
        at = words.index("--max-eval-clips")
        del words[at:at + 2]
    if max_eval_clips is not None and "--out" in words:
        at = words.index("--out")
        words[at:at] = ["--max-eval-clips", str(max_eval_clips)]
    license = check_license(license or recipe.get(CARD_LICENSE) or DEFAULT_LICENSE)
    if (words and shlex.join(words) != recipe.get("command")) or recipe.get(CARD_LICENSE, license) != license:
        if words:
            recipe["command"] = shlex.join(words)
        recipe[CARD_LICENSE] = license
        write_json(run_dir / RECIPE_JSON, recipe)
    reports = evaluate_run(run_dir, split="test", max_clips=max_eval_clips, device=device, frames=frames)
    write_json(run_dir / "metrics-test.json", reports_to_dict(reports, run_dir.name, "test", frames,
                                                              weights=run_dir / "model.safetensors", cfg=cfg))
    files = write_card(run_dir, run_dir / "README.md", repo_id=None, license=license)
    if report is not None:  # after the files: `reproduce ... | head` ends the command where the pipe stops taking
        report(reports)
    return files


def reproduce(model: str, dataset: str, out: str | Path, *, root: str | Path | None = None,
              source: str | None = None, budget_steps: int | None = None, device: str = "cpu",
              max_eval_clips: int | None = None, force: bool = False, overrides: dict[str, Any] | None = None,
              fit: Callable[[Any], Any] | None = None, license: str = DEFAULT_LICENSE) -> dict[str, Path]:
    """Train ``model`` on ``dataset`` by the paper's recipe into ``out``, evaluate it and write its card (claiming
    ``license``, a Hub license id, for the weights)."""
    _check_max_eval_clips(max_eval_clips)
    license = check_license(license)  # before the hours of training
    check_out(out, force)  # before the recipe's data is downloaded
    plan = make_plan(model, dataset, root=root, source=source, budget_steps=budget_steps, device=device,
                     overrides=overrides, out=out)
    trainer = start(plan, out, force=force, license=license)
    (fit or (lambda t: t.fit()))(trainer)
    return finish(trainer, device=device, max_eval_clips=max_eval_clips, license=license)


def _rendered_as_it_stands(run_dir: Path, card: Path) -> bool:
    """Whether ``card`` is msrnn-zoo's card of ``run_dir`` as it would be rendered now, locally or for the one
    repo its load lines name: then finishing may render it again; anything else is the user's text."""
    from .card import is_our_rendering, render_card

    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        return is_our_rendering(text, lambda repo, license: render_card(run_dir, repo, license=license))
    except (ValueError, OSError):  # a run the card cannot be rendered for as it stands: not ours to replace
        return False


def _check_card_replaceable(out: Path) -> None:
    """Refuse, before any training, to finish a reproduction whose card or pictures ``finish`` would write over:
    it renders them again, and a card edited after the reproduction wrote it was replaced without a word."""
    from .card import FORECAST_PNG, METRICS_PNG
    from .io import refuse_overwrite

    card = out / "README.md"
    if card.exists() and not (card.is_file() and _rendered_as_it_stands(out, card)):
        where = shlex.quote(str(out))
        raise OverwriteRefusedError(
            f"{card} is not the card msrnn-zoo rendered for this run (edited since, or written by hand), and "
            "finishing the reproduction writes its card there; move it away (it stays yours), then ",
            python_hint=f"call reproduce.resume({str(out)!r}) again.",
            cli_hint=f"run `msrnn-zoo reproduce --resume {where}` again.")
    for name in (METRICS_PNG, FORECAST_PNG):
        refuse_overwrite(out / name, True, "picture")


def resume(out: str | Path, *, device: str | None = None, max_eval_clips: int | None = None,
           fit: Callable[[Any], Any] | None = None, license: str | None = None) -> dict[str, Path]:
    """Finish an interrupted reproduction: train from its last checkpoint, then evaluate and render (under
    ``license``; None: the one it was started with)."""
    from .train import Trainer

    _check_max_eval_clips(max_eval_clips)
    if license is not None:
        license = check_license(license)
    out = Path(out)
    # "not a run started by reproduce (no recipe.json)" about a mistyped path sent the user looking inside it
    if out.is_file():
        hint = f" ({out.parent} is one)" if (out.parent / RECIPE_JSON).is_file() else ""
        said = f"{out} is a file, not a run directory: give the {{}}{hint}."
        raise with_cli_message(NotADirectoryError(said.format("out directory of an earlier reproduce()")),
                               said.format("--out directory of an earlier `msrnn-zoo reproduce`"))
    if not out.is_dir():
        said = f"{out} ({out.resolve()}) does not exist: give the {{}}."
        raise with_cli_message(FileNotFoundError(said.format("out directory of an earlier reproduce()")),
                               said.format("--out directory of an earlier `msrnn-zoo reproduce`"))
    if not (out / RECIPE_JSON).is_file():
        from .train import TRAIN_CONFIG

        where = shlex.quote(str(out))
        trained = (out / TRAIN_CONFIG).is_file()
        raise with_cli_message(
            FileNotFoundError(f"{out} is not a run started by reproduce() (no {RECIPE_JSON})."
                              + (f" It is a training run: continue it with Trainer.resume({str(out)!r}).fit()."
                                 if trained else "")),
            f"{out} is not a run started by `msrnn-zoo reproduce` (no {RECIPE_JSON})."
            + (f" It is a run of `msrnn-zoo train`: continue it with `msrnn-zoo train --resume {where}`."
               if trained else ""))
    read_json(out / RECIPE_JSON, "recipe file")
    _check_card_replaceable(out)
    trainer = Trainer.resume(out, device=device)
    if not trainer.finished:
        (fit or (lambda t: t.fit()))(trainer)
    return finish(trainer, device=str(trainer.device), max_eval_clips=max_eval_clips, license=license)
