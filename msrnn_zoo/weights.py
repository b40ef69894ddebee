"""Loading weights from a file the user handed us, refusing what would load silently wrong.

``load_state_dict`` casts int32, float16 and float64 tensors into float32 parameters without a word and
copies NaN like any other number; a truncated file or one from another model fails with a PyTorch
traceback. Here each of those is one ``ValueError`` that names the file and what to do.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class UnreadableWeightsError(ValueError):
    """A weights file that is not safetensors (damaged, or another format); ``detail`` says what the reader found,
    so that a caller who knows where the file came from (a Hub repo) can say what to do instead."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def read_safetensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; a damaged or foreign file is a ``ValueError`` naming it.

    safetensors refuses ``cpu:0``, which PyTorch (and ``--device``) accept: the CPU is named without an index, or
    every run trained with ``--device cpu:0`` had its weights called damaged when it was resumed or evaluated."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}.")
    device = torch.device(device)
    try:
        return load_file(str(path), device="cpu" if device.type == "cpu" else str(device))
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        detail = f"{type(exc).__name__}: {exc}"
        raise UnreadableWeightsError(f"{path} is not a readable safetensors file ({detail}); it is damaged or was "
                                     "not written by msrnn-zoo. Restore it, or train again.", detail) from exc


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
"""The safetensors dtype names and the PyTorch dtypes they hold (the ones :func:`weights_layout` knows)."""


def weights_layout(path: str | Path) -> dict[str, torch.Tensor] | None:
    """Every tensor of a safetensors file as a tensor on the ``meta`` device: its name, shape and dtype, read from the
    header alone, none of its data. None where a dtype is not one of :data:`_DTYPES` (the file is then read whole).

    A model is built (and its memory filled) from its config.json: comparing the config's model, built on the meta
    device, with this first, a config of someone else's repo that claims ``hidden_channels: 100000`` beside small
    weights is refused before it allocates gigabytes."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}.")
    try:
        with safe_open(str(path), "pt") as handle:
            slices = {name: handle.get_slice(name) for name in handle.keys()}  # noqa: SIM118 (a handle, no dict)
            found = {name: (tuple(part.get_shape()), part.get_dtype()) for name, part in slices.items()}
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        detail = f"{type(exc).__name__}: {exc}"
        raise UnreadableWeightsError(f"{path} is not a readable safetensors file ({detail}); it is damaged or was "
                                     "not written by msrnn-zoo. Restore it, or train again.", detail) from exc
    if any(dtype not in _DTYPES for _, dtype in found.values()):
        return None
    return {name: torch.empty(shape, dtype=_DTYPES[dtype], device="meta") for name, (shape, dtype) in found.items()}


def _names(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str, *, cast: bool = False) -> None:
    """Raise ``ValueError`` unless ``state`` holds exactly ``model``'s tensors: names, shapes, dtypes, finite values
    (of the tensors that hold any: a layout of meta tensors, :func:`weights_layout`, is checked for the rest).

    ``cast=True`` accepts floating-point weights of another precision (converted on load); integer weights
    are never cast, because they are never the weights of a network.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} weight(s) the model has ({_names(missing)})")
        if extra:
            parts.append(f"holds {len(extra)} weight(s) the model does not have ({_names(extra)})")
        raise ValueError(f"{source} {' and '.join(parts)}: it belongs to another model or configuration than "
                         "its config.json describes.")
    for name, tensor in state.items():
        want = expected[name]
        if tuple(tensor.shape) != tuple(want.shape):
            raise ValueError(f"{source}: weight {name} has shape {tuple(tensor.shape)} but the model built from "
                             f"config.json needs {tuple(want.shape)}; the weights and config.json do not match.")
        castable = cast and tensor.is_floating_point() and want.is_floating_point()
        if tensor.dtype != want.dtype and not castable:
            hint = ("pass cast=True to convert them" if tensor.is_floating_point()
                    else "integer weights are never converted")
            raise ValueError(f"{source}: weight {name} is {str(tensor.dtype).replace('torch.', '')} but the model "
                             f"is {str(want.dtype).replace('torch.', '')}; {hint}.")
        if tensor.is_floating_point() and not tensor.is_meta and not torch.isfinite(tensor).all():
            raise ValueError(f"{source}: weight {name} contains NaN or Inf; these weights cannot forecast anything. "
                             "Use an earlier checkpoint, or train again with a lower learning rate.")


def load_weights(model: nn.Module, path: str | Path, *, device: str | torch.device = "cpu",
                 cast: bool = False) -> None:
    """Read, check and load the weights at ``path`` into ``model`` (see :func:`check_weights`).

    Convolutions stored separately that the model computes as one (:class:`~msrnn_zoo.cell.JointConv2d`, e.g.
    in checkpoints written before the cells joined them) are folded together first.
    """
    from .joint_conv import fold_joint_convs
    from .versions import upgrade_noted

    state = read_safetensors(path, device)
    with upgrade_noted(writers_of(path)):  # weights a newer cell plugin (or zoo) lays out otherwise, say so
        fold_joint_convs(model, state)
        check_weights(model, state, str(path), cast=cast)
    model.load_state_dict(state, strict=True)


def versions_metadata(cell: str | None = None) -> dict[str, str]:
    """The safetensors metadata (str -> str) that records the versions writing a weights file, as ``written_by`` in
    a JSON file: the tensors' names and shapes are the cell plugin's, and a newer one may have changed them."""
    import json

    from .versions import WRITTEN_BY, written_by

    return {WRITTEN_BY: json.dumps(written_by(cell=cell), sort_keys=True)}


def writers_of(path: str | Path) -> dict[str, object]:
    """``{"written_by": {distribution: version}}`` as the metadata of the safetensors file ``path`` records it
    (:func:`versions_metadata`), for :func:`~msrnn_zoo.versions.upgrade_note`; empty where it records none."""
    import json

    from .io import safetensors_header
    from .versions import WRITTEN_BY

    header = safetensors_header(Path(path))
    meta = header.get("__metadata__") if header is not None else None
    try:
        recorded = json.loads(meta[WRITTEN_BY])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return {}
    return {WRITTEN_BY: recorded} if isinstance(recorded, dict) else {}
