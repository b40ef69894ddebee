"""Model cards rendered from ``cards/model_card.md`` with huggingface_hub's ModelCard (YAML metadata the
Hub indexes, plus the run's architecture, training recipe and measured metrics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .io import read_json
from .registry import get_cell

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"


def metrics_table(metrics: dict[str, Any]) -> str:
    """A markdown table of the model beside every baseline it was scored with, each metric with its convention."""
    names = metrics.get("forecasters") or [k for k in ("model", "copy-last-frame") if k in metrics]
    model = metrics["model"]["metrics"]
    rows = [f"| metric | {' | '.join(names)} | convention |", f"|---|{'---:|' * len(names)}---|"]
    for name, result in model.items():
        arrow = "↑" if result["higher_is_better"] else "↓"
        values = " | ".join(f"{metrics[f]['metrics'][name]['mean']:.4f}" for f in names)
        rows.append(f"| {result['label']} {arrow} | {values} | {result['convention']} |")
    if "frames_scored" in metrics:
        rows.append(f"\nScored frames: {metrics['frames_scored']}.")
    return "\n".join(rows)


def render_card(run_dir: str | Path, repo_id: str, split: str = "test") -> str:
    """The model card of a trained run, to be pushed as the repo's README.md."""
    from huggingface_hub import ModelCard, ModelCardData

    from .evaluate import load_run

    run_dir = Path(run_dir)
    model, cfg = load_run(run_dir, "cpu")
    config = model.config
    cell = get_cell(config.cell)
    metrics_path = run_dir / f"metrics-{split}.json"
    metrics = read_json(metrics_path, "metrics file") if metrics_path.is_file() else None
    dataset = cfg.dataset or f"own clips ({Path(cfg.data or '').name})"
    card_data = ModelCardData(library_name="msrnn-zoo", license="apache-2.0", datasets=[cfg.dataset] if cfg.dataset
                              else None, tags=["video-prediction", "spatiotemporal", "msrnn-zoo", config.cell],
                              metrics=["mse", "mae", "ssim", "psnr"], pipeline_tag=None)
    training = (f"{cfg.epochs} epoch(s), batch {cfg.batch_size}, Adam lr {cfg.lr}, seed {cfg.seed}, "
                f"input schedule `{cfg.sampling or model.cell_class.sampling}`; loss MSE + MAE summed over pixels "
                f"(+ the cell's auxiliary loss). Training config: `{json.dumps(cfg.__dict__, default=str)}`")
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATE), model_name=cfg.model, repo_id=repo_id, cell=config.cell,
        paper=cell.paper or "see its plugin", schedule=model.schedule.describe(),
        schedule_text="multi-scale" if len(set(model.levels)) > 1 else "single-scale",
        num_layers=config.num_layers, hidden_channels=config.hidden_channels, kernel_size=config.kernel_size,
        in_channels=config.in_channels, cell_options=json.dumps(config.cell_options) or "{}",
        parameters=f"{sum(p.numel() for p in model.parameters()):,}", dataset=dataset,
        in_frames=cfg.in_frames, out_frames=cfg.out_frames, training=training, split=split,
        samples=metrics["model"]["samples"] if metrics else 0,
        metrics_table=metrics_table(metrics) if metrics else "")
    return str(card)
