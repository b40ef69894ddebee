"""Loading checkpoints of the original MS-RNN implementation (github.com/mazhf/MS-RNN).

The original stores ``embed.conv_embed.*`` (1x1 embedding), ``rnns.lstm.<layer>.<submodule>.*`` (the
cells), ``rnns.<shared>.*`` (a module shared by all layers, e.g. PredRNN-V2's adapter) and
``fc.conv_fc.*`` (1x1 head), behind a ``module.`` prefix when saved from its DDP training. The
translation of a cell's own submodule names belongs to the cell (:meth:`RecurrentCell.original_key`);
this module only knows the frame around the cells.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .factory import build_config, split_tag
from .joint_conv import fold_joint_convs
from .network import Forecaster
from .registry import get_cell, get_model, registry
from .validation import with_cli_message

_LAYER = re.compile(r"^rnns\.lstm\.(\d+)\.(.+)$")
WEIGHT_KEYS = ("state_dict", "model", "model_state_dict", "net")
"""Where a checkpoint of weights and training state keeps the weights; taken only when one of them holds a dict."""


def read_state_dict(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict from a mapping, a ``.pth``/``.pt`` file (read with ``weights_only=True``) or safetensors.

    A file holding the weights beside training state (under one of :data:`WEIGHT_KEYS`) gives the weights."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}: pass the original's .pth file or a state dict.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        with open(path, "rb") as file:
            head = file.read(4)
        # torch.save writes a zip archive (a pickle, before PyTorch 1.6); in either a refusal of weights_only is
        # about what the pickle holds
        if head != b"PK\x03\x04" and head[:1] != b"\x80":
            raise ValueError(f"{path} is not a checkpoint torch.save wrote: it starts with {head!r}, not with a zip "
                             "archive's or a pickle's header. Pass the original's .pth file.") from exc
        if "weights only load failed" in str(exc).lower():
            raise ValueError(
                f"{path} holds Python objects besides tensors, which msrnn-zoo does not unpickle: that could run "
                "code (torch.load with weights_only=True refused it). If you trust the file, save its state dict "
                f"alone: torch.save(torch.load({str(path)!r}, weights_only=False)['state_dict'], 'weights.pth') "
                "(or the dict itself if it has no 'state_dict' key), and convert weights.pth.") from exc
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ValueError(f"{path} could not be read as a checkpoint ({type(exc).__name__}: {first}); it may be cut "
                         "short or damaged: copy it again.") from exc
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    elif isinstance(data, Mapping) and not any(isinstance(v, torch.Tensor) for v in data.values()):
        # training scripts save the weights beside the optimizer's state under one of these names
        inner = [key for key in WEIGHT_KEYS if isinstance(data.get(key), Mapping)]
        if len(inner) == 1:
            data = data[inner[0]]
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a state dict of tensors.")
    return dict(data)


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def infer_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What the checkpoint itself tells about the model: channels and depth."""
    try:
        weight = state["embed.conv_embed.weight"]
    except KeyError:
        nested = [key for key, value in state.items() if isinstance(value, Mapping)]
        hint = (f"; it holds dicts under {', '.join(map(repr, nested[:5]))}: save the one with the weights alone, "
                "torch.save(checkpoint[KEY], 'weights.pth'), and convert weights.pth") if nested else ""
        raise ValueError("Not an original MS-RNN checkpoint: it has no 'embed.conv_embed.weight' "
                         f"(first keys: {sorted(state)[:5]}){hint}.") from None
    layers = {int(m.group(1)) for k in state if (m := _LAYER.match(k))}
    if not layers:
        raise ValueError("Not an original MS-RNN checkpoint: no 'rnns.lstm.<layer>.*' keys.")
    return {"hidden_channels": int(weight.shape[0]), "in_channels": int(weight.shape[1]),
            "num_layers": max(layers) + 1}


def translate(state: Mapping[str, torch.Tensor], model: Forecaster) -> dict[str, tuple[str, torch.Tensor]]:
    """Original key names -> ours for ``model``: ``{our key: (original key, tensor)}``.

    Keys a cell declares unused in its layer are left out; keys nobody claims are kept under
    ``<unknown>.`` so that the strict check reports them. Separate convolutions that a cell joins into one
    (:class:`~msrnn_zoo.cell.JointConv2d`) arrive folded, their original keys joined by ``+``.
    """
    aux = model.cell_class.auxiliary_loss
    ours: dict[str, tuple[str, torch.Tensor]] = {}
    for key, value in state.items():
        new: str | None
        if key.startswith("embed.conv_embed."):
            new = "embed." + key[len("embed.conv_embed."):]
        elif key.startswith("fc.conv_fc."):
            new = "head." + key[len("fc.conv_fc."):]
        elif (m := _LAYER.match(key)) and int(m.group(1)) < len(model.cells):
            inner = model.cells[int(m.group(1))].original_key(m.group(2))  # type: ignore[operator]  # (a ModuleList)
            new = None if inner is None else f"cells.{m.group(1)}.{inner}"
        elif key.startswith("rnns.") and aux is not None:
            new = "aux_loss." + aux.original_key(key[len("rnns."):])
        else:
            new = "<unknown>." + key
        if new is not None:
            ours[new] = (key, value)
    # separate convolutions of the original that a cell computes as one joint convolution are folded into it
    tensors = {k: v for k, (_, v) in ours.items()}
    origin = {k: o for k, (o, _) in ours.items()}
    folded = fold_joint_convs(model, tensors, name=lambda ours: f"{origin[ours]} (ours: {ours})")
    for joint, parts in folded.items():
        origin[joint] = " + ".join(origin.pop(part) for part in parts)
    return {k: (origin[k], v) for k, v in tensors.items()}


def from_original(state_dict_or_path: str | Path | Mapping[str, torch.Tensor], name: str,
                  **config: Any) -> Forecaster:
    """Build model ``name`` and load an original MS-RNN state dict into it, strictly.

    Channels and depth are read from the checkpoint; other settings (``kernel_size``, cell options)
    are passed as keyword arguments, as to :func:`msrnn_zoo.create`. A key left over or missing is an
    error that names it: a silent partial load would give a model that merely looks converted.
    """
    model_name, _ = split_tag(name)
    state = _strip_prefix(read_state_dict(state_dict_or_path))
    inferred = infer_config(state)
    for key, value in inferred.items():
        if key in config and config[key] != value:
            raise ValueError(f"The checkpoint has {key}={value}, but {key}={config[key]} was asked for.")
    model = Forecaster(build_config(model_name, **{**config, **inferred}),
                       get_cell(get_model(model_name).cell).cell)
    ours = translate(state, model)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(k for k in ours if k not in expected)
    if missing or unexpected:
        problems = []
        if unexpected:
            problems.append("left over from the checkpoint: " + ", ".join(ours[k][0] for k in unexpected[:8]))
        if missing:
            problems.append("missing for the model: " + ", ".join(missing[:8]))
        raise ValueError(f"The checkpoint does not match {model_name!r} ({'; '.join(problems)}). "
                         "Is it a checkpoint of this model, with these options?")
    for key, (original, tensor) in ours.items():
        if expected[key].shape != tensor.shape:
            raise ValueError(f"Shape mismatch at {original} -> {key}: checkpoint {tuple(tensor.shape)}, model "
                             f"{tuple(expected[key].shape)}; check kernel_size and the cell options.")
        # load_state_dict casts integers into float parameters without a word, and a NaN in a weight the forecast
        # does not use (PredRNN-V2's adapter) passed the forward check, was saved, and the folder never loaded
        if expected[key].is_floating_point() and not tensor.is_floating_point():
            raise ValueError(f"{original} is {str(tensor.dtype).replace('torch.', '')}, not floating point: the "
                             "checkpoint is quantized or damaged, and its integers would load as other weights. "
                             "Convert the original's float checkpoint.")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{original} (ours: {key}) contains NaN or Inf: the checkpoint is damaged, or its "
                             "training diverged. Convert an earlier checkpoint of it.")
    model.load_state_dict({key: tensor for key, (_, tensor) in ours.items()}, strict=True)
    return model


def fitting_equally(state_dict_or_path: str | Path | Mapping[str, torch.Tensor], name: str,
                    **config: Any) -> list[str]:
    """The other models of ``name``'s cell (its other schedules) that the checkpoint loads into as well.

    A schedule adds no weights, so the original's ``PredRNN`` and ``MS_PredRNN`` save the same keys and shapes:
    a checkpoint converted as the wrong one loads without a word and forecasts nonsense. Only the original's
    outputs (``--reference``) or its class name can tell them apart, which is what the caller is told."""
    state = read_state_dict(state_dict_or_path)
    cell = get_model(split_tag(name)[0]).cell
    fits = []
    for other, entry in sorted(registry().models.items()):
        if entry.cell != cell or other == split_tag(name)[0]:
            continue
        try:
            from_original(state, other, **config)
        except (ValueError, TypeError, RuntimeError):
            continue
        fits.append(other)
    return fits


PARITY_TOLERANCE = 1e-4
"""Max |difference| from the original's outputs that counts as parity (float32 reordering is ~1e-7)."""


def check_conversion(model: Forecaster, name: str, out: str | Path, *, size: int = 64,
                     reference: str | Path | None = None, in_len: int | None = None,
                     force: bool = False) -> dict[str, str]:
    """Check a converted model, save it to ``out`` and check that the saved folder loads to the same model.

    The forward check feeds 4 frames of ``torch.rand`` from a generator seeded with 0 and asks for 4 forecast
    frames, so the same input can be given to the original code; ``reference`` (a file with ``input`` and
    the original's ``output``, as the zoo's parity fixtures) compares with the original's own numbers.
    Nothing is written unless every check before the save passes. Returns what was checked, in words.
    """
    from .factory import create
    from .testing import load_fixture, parity_against
    from .train import refuse_a_run_as_model_folder

    if size < 1:  # (the command line gives size as --size, which refuses it before)
        said = f"{size}: the forward check needs frames of at least 1x1; give a size of 1 or more, such as 64."
        raise with_cli_message(ValueError(f"size={said}"), f"--size {said}")
    try:  # (the command line gives out as --out)
        refuse_a_run_as_model_folder(out, "another folder as out")
    except ValueError as exc:
        try:
            refuse_a_run_as_model_folder(out, "another --out")
        except ValueError as cli:
            raise with_cli_message(exc, str(cli)) from None
    model = model.eval()
    model.check_size(size, size)
    report = {"model": name, "parameters": f"{sum(p.numel() for p in model.parameters()):,}",
              "config": model.config.to_json()}
    if reference is not None:
        tensors, meta = load_fixture(reference)
        if "input" not in tensors or "output" not in tensors:
            raise ValueError(f"{reference} has no 'input' and 'output' tensors to check parity against.")
        steps = in_len if in_len is not None else int(meta.get("in_len", 0))
        frames_in_reference = int(tensors["input"].shape[0])
        if in_len is None and steps < 1:  # (the command line gives in_len as --in-len)
            said = f"Say how many of {reference}'s frames are context: {{}}."
            raise with_cli_message(ValueError(said.format("in_len=N")), said.format("--in-len N"))
        if not 1 <= steps < frames_in_reference:
            said = (f": {reference} holds {frames_in_reference} frames, and the context must leave at least one to "
                    f"forecast: give 1..{frames_in_reference - 1}.")
            raise with_cli_message(ValueError(f"in_len={steps}{said}"), f"--in-len {steps}{said}")
        error = parity_against(model, tensors["input"], tensors["output"], steps)
        if not error <= PARITY_TOLERANCE:  # (the model's name is --model on the command line)
            said = (f"Parity check failed: the converted model differs from {Path(reference).name}'s outputs by up to "
                    f"{error:.3g} (tolerance {PARITY_TOLERANCE:g}). Check {{}} and the cell options.")
            raise with_cli_message(ValueError(said.format(f"the model's name ({name!r})")), said.format("--model"))
        shape = tuple(tensors["input"].shape)
        report["parity with the reference"] = (f"max |difference| {error:.2e} over input {shape} (T, B, C, H, W), "
                                               f"{steps} context frames")
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(1, 4, model.config.in_channels, size, size, generator=generator)
    with torch.no_grad():
        forecast = model(frames, horizon=4)
    if not torch.isfinite(forecast).all():
        raise ValueError("The converted model forecasts NaN or Inf on a random input: the checkpoint is damaged.")
    report["forward check"] = (f"input torch.rand(1, 4, {model.config.in_channels}, {size}, {size}) from "
                               f"torch.Generator().manual_seed(0) -> 4 forecast frames, finite, mean "
                               f"{forecast.mean().item():.6f}, std {forecast.std().item():.6f}")
    model.save_pretrained(out, force=force)
    loaded = create(name, pretrained=str(out)).eval()
    with torch.no_grad():
        again = loaded(frames, horizon=4)
    if not torch.equal(again, forecast):
        raise ValueError(f"{out} does not load back to the converted model (forecasts differ by "
                         f"{(again - forecast).abs().max().item():.3g}).")
    report["reload"] = f"create({name!r}, pretrained={str(out)!r}) forecasts bit-identically"
    return report
