"""The conformance kit: what every cell of the zoo must satisfy, as reusable checks.

A plugin's tests call these with its cell's name (``run_conformance("convlstm")``), which is also how a
third party proves a new cell works in both the single-scale and the multi-scale network. The parity
helpers compare against fixtures of the original implementation (safetensors holding ``weights.*``,
``input`` (T, B, C, H, W) and ``output`` (T-1, B, C, H, W), metadata with ``in_len``). ``run_cli`` runs the
command line in-process, for the zoo's tests and a plugin's.
"""

from __future__ import annotations

import contextlib
import inspect
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

import torch

from . import compiled_cells
from .cell import RecurrentCell
from .factory import create
from .network import Forecaster
from .profile import saved_bytes_by_op, training_clip
from .recompute import recipes_off


class ConformanceError(AssertionError):
    """A cell breaks the contract of :class:`~msrnn_zoo.cell.RecurrentCell`; the message says what and how to fix it."""


def run_cli(*args: object, ok: bool = True, catch_exceptions: bool = True) -> Any:
    """``msrnn-zoo ARGS`` in-process, arguments given as paths or numbers as they are; returns click's ``Result``.

    With ``ok`` a non-zero exit fails the test and shows what the command printed, which is the first thing
    one needs when a command breaks; pass ``ok=False`` to test the exit code and message of a mistake.
    """
    from click.testing import CliRunner

    from .cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=catch_exceptions)
    if ok and result.exit_code != 0:
        detail = result.output
        if result.exc_info and not isinstance(result.exception, SystemExit):
            detail += "".join(traceback.format_exception(*result.exc_info))
        raise AssertionError(f"msrnn-zoo {' '.join(map(str, args))} exited {result.exit_code}:\n{detail}")
    return result


def _fail(subject: str, problem: str, fix: str) -> NoReturn:
    raise ConformanceError(f"{subject}: {problem}. How to fix: {fix}")


INIT_SIGNATURE = ("def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, *, "
                  "layer_index: int = 0, num_layers: int = 1, <your options with defaults>)")
FORWARD_SIGNATURE = ("def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...], "
                     "memory: torch.Tensor | None = None, lower_previous: torch.Tensor | None = None) -> CellOutput")
INIT_STATE_SIGNATURE = ("def init_state(self, batch: int, height: int, width: int, *, device=None, dtype=None) "
                        "-> tuple[torch.Tensor, ...]")


def small(name: str, **overrides: Any) -> Forecaster:
    """A small model of ``name`` for fast checks (hidden 8 unless told otherwise)."""
    return create(name, **{"hidden_channels": 8, **overrides})


def _build_cell(cell: str, cls: type[RecurrentCell], layer_index: int, num_layers: int, hidden: int = 8,
                kernel_size: int = 3, options: dict[str, Any] | None = None) -> RecurrentCell:
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:  # else the TypeError below, whose fix (the constructor's signature) is not this one
        signatures = {"init_state": INIT_STATE_SIGNATURE, "forward": FORWARD_SIGNATURE}
        _fail(f"cell {cell!r}", f"it does not define {' and '.join(missing)} (a misspelt name counts as missing)",
              "define " + " and ".join(f"`{signatures.get(name, name)}`" for name in missing))
    try:  # the network's in == hidden
        built = cls(hidden, hidden, kernel_size, layer_index=layer_index, num_layers=num_layers, **(options or {}))
    except TypeError as exc:
        _fail(f"cell {cell!r}", f"its constructor cannot be called the way the network calls it ({exc})",
              f"give it the signature `{INIT_SIGNATURE}` and call `super().__init__(in_channels, hidden_channels, "
              "kernel_size, layer_index=layer_index, num_layers=num_layers)` first")
    except AttributeError as exc:
        _fail(f"cell {cell!r}", f"its constructor failed ({exc})",
              "call `super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, "
              "num_layers=num_layers)` before creating any submodule")
    for attr in ("in_channels", "hidden_channels", "kernel_size", "layer_index", "num_layers"):
        if not hasattr(built, attr):
            _fail(f"cell {cell!r}", f"it has no attribute {attr!r} after construction",
                  "call `super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, "
                  "num_layers=num_layers)` in __init__")
    return built


def _check_state(subject: str, state: Any, batch: int, device: torch.device, dtype: torch.dtype, what: str) -> None:
    if isinstance(state, torch.Tensor):
        _fail(subject, f"{what} is a bare tensor of shape {tuple(state.shape)}",
              "return a tuple of tensors, even for one: `return (h,)`")
    if isinstance(state, tuple):  # name the element: "a tuple, not a tuple of tensors" hides which one it is
        other = next((i for i, t in enumerate(state) if not isinstance(t, torch.Tensor)), None)
        if other is not None:
            _fail(subject, f"{what}[{other}] is {type(state[other]).__name__}, not a tensor",
                  "put only tensors in the state (a part that is absent at first starts as zeros, "
                  "msrnn_zoo.cell.zeros_like(h)); the network maps over it to move and detach states")
    if not isinstance(state, tuple) or not all(isinstance(t, torch.Tensor) for t in state) or not state:
        _fail(subject, f"{what} is {type(state).__name__}, not a non-empty tuple of tensors",
              "return a tuple of tensors: `return (h, c)`; the network maps over it to move and detach states")
    for i, tensor in enumerate(state):
        if tensor.dim() < 1 or tensor.shape[0] != batch:
            _fail(subject, f"{what}[{i}] has shape {tuple(tensor.shape)}, its first dimension is not the batch "
                  f"({batch})", "make every state tensor batch-first, (B, channels, H, W)")
        if tensor.device.type != device.type:
            _fail(subject, f"{what}[{i}] is on {tensor.device} but {device} was asked for",
                  "pass `device=device` to every tensor init_state creates (msrnn_zoo.cell.zeros does)")
        if tensor.is_floating_point() and tensor.dtype != dtype:
            _fail(subject, f"{what}[{i}] is {tensor.dtype} but {dtype} was asked for",
                  "pass `dtype=dtype` to every tensor init_state creates (msrnn_zoo.cell.zeros does)")


def check_cell_contract(cell: str, **overrides: Any) -> None:
    """The cell class alone, before any network: constructor, class attributes, init_state and one forward.

    ``overrides`` are those of :func:`run_conformance`: ``hidden_channels``, ``kernel_size`` and ``num_layers``
    build the cell as the models are built, the cell's own options are passed to it (a cell may work only with
    some), and the other model options (``in_channels``, ``schedule_options``) are not the cell's concern. Each
    failure names what is wrong and the fix (see CONTRIBUTING.md, "The cell contract").
    """
    from .cell import AuxiliaryLoss, CellOutput
    from .factory import CONFIG_FIELDS, cell_options
    from .registry import get_cell
    from .sampling import SCHEDULES

    cls = get_cell(cell).cell
    options = {**(overrides.get("cell_options") or {}),
               **{k: v for k, v in overrides.items() if k not in CONFIG_FIELDS}}
    options = cell_options(cls, options, cell)  # a misspelt option is named with the real ones
    hidden, kernel_size = overrides.get("hidden_channels", 8), overrides.get("kernel_size", 3)
    num_layers = overrides.get("num_layers", 2)
    subject = f"cell {cell!r} ({cls.__module__}.{cls.__qualname__})"
    for attr in ("uses_memory", "uses_lower_previous"):
        if not isinstance(getattr(cls, attr), bool):
            _fail(subject, f"{attr} is {getattr(cls, attr)!r}", f"set the class attribute {attr} to True or False")
    if cls.sampling not in SCHEDULES:
        _fail(subject, f"sampling is {cls.sampling!r}", f"use one of {', '.join(sorted(SCHEDULES))}")
    if not isinstance(cls.memory_flow, str) or not cls.memory_flow.strip():
        _fail(subject, "memory_flow is empty", "describe in one line which states flow where (shown by `info`)")
    aux = cls.auxiliary_loss
    if aux is not None and not (isinstance(aux, type) and issubclass(aux, AuxiliaryLoss)):
        _fail(subject, f"auxiliary_loss is {aux!r}", "set it to a subclass of msrnn_zoo.AuxiliaryLoss, or None")
    keys = cls.original_keys
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
        _fail(subject, "original_keys is not a dict of str to str", "map {their submodule name: ours}")
    batch, height, width = 2, 8, 12  # not square, to catch swapped axes; even, as some cells need
    for layer_index in sorted({0, num_layers - 1}):  # the first and the last layer, where cells may differ
        layer = _build_cell(cell, cls, layer_index, num_layers, hidden, kernel_size, options)
        where = f"{subject}, layer {layer_index} of {num_layers}"
        try:
            state = layer.init_state(batch, height, width, device=torch.device("meta"), dtype=torch.float64)
        except TypeError as exc:
            _fail(where, f"init_state cannot be called as the network calls it ({exc})",
                  f"give it the signature `{INIT_STATE_SIGNATURE}`")
        _check_state(where, state, batch, torch.device("meta"), torch.float64, "init_state(...)")
        for i, tensor in enumerate(state):  # the size is not square for this: else the cell's own forward fails
            if tensor.dim() >= 3 and tuple(tensor.shape[-2:]) == (width, height):
                _fail(where, f"init_state(...)[{i}] has shape {tuple(tensor.shape)} for height {height} and width "
                      f"{width}: its last two dimensions are swapped", "make every state tensor (B, channels, "
                      "height, width), in the order init_state receives them")
        state = layer.init_state(batch, height, width, device=torch.device("cpu"), dtype=torch.float32)
        _check_state(where, state, batch, torch.device("cpu"), torch.float32, "init_state(...)")
        x = torch.rand(batch, hidden, height, width)
        memory = torch.zeros(batch, layer.memory_channels, height, width) if cls.uses_memory else None
        lower = torch.zeros(batch, hidden, height, width) if cls.uses_lower_previous and layer_index > 0 else None
        try:  # bound before the call, so that a TypeError raised inside forward is left the user's own traceback
            inspect.signature(layer.forward).bind(x, state, memory, lower)
        except TypeError as exc:
            _fail(where, f"forward cannot be called as the network calls it ({exc})",
                  f"give it the signature `{FORWARD_SIGNATURE}`")
        result = layer(x, state, memory, lower)
        if not isinstance(result, CellOutput):
            _fail(where, f"forward returned {type(result).__name__}",
                  "return msrnn_zoo.CellOutput(output, state, memory, aux)")
        want = (batch, hidden, height, width)
        if not isinstance(result.output, torch.Tensor) or tuple(result.output.shape) != want:
            shape = (tuple(result.output.shape) if isinstance(result.output, torch.Tensor)
                     else f"a {type(result.output).__name__}")  # its repr could be a whole nested list
            _fail(where, f"forward's output is {shape}, not (B, hidden_channels, H, W) = {want}",
                  "return the layer's hidden output, which goes up the stack, as CellOutput.output")
        if result.output.dtype != x.dtype:
            _fail(where, f"forward's output is {result.output.dtype} for an input x of {x.dtype}",
                  "create every intermediate tensor and constant with the dtype of the input (x.new_tensor, "
                  "torch.zeros_like, a Python float rather than a float64 tensor or numpy value)")
        _check_state(where, result.state, batch, torch.device("cpu"), torch.float32, "forward's state")
        if len(result.state) != len(state) or any(a.shape != b.shape for a, b in zip(result.state, state)):
            _fail(where, "forward's state does not have the shapes init_state gives",
                  "return the state in the same layout init_state creates: the network feeds one into the other")
        # memory is a tensor where the cell uses it
        if cls.uses_memory and (result.memory is None
                                or tuple(result.memory.shape) != tuple(memory.shape)):  # type: ignore[union-attr]
            _fail(where, "uses_memory is True but forward did not return the memory M in the shape it received",
                  "return the updated memory as CellOutput.memory, shape (B, memory_channels, H, W)")
        if not cls.uses_memory and result.memory is not None:
            _fail(where, "forward returned a memory but uses_memory is False",
                  "set uses_memory = True if the cell reads and writes the zigzag memory, or return memory=None")
        _check_another_clip(where, layer, cls, (batch, height, width), (3, 4, 6))
    _check_other_width_and_kernel(subject, cell, cls, hidden, kernel_size, num_layers, options)


def _check_another_clip(where: str, layer: RecurrentCell, cls: type[RecurrentCell], first: tuple[int, int, int],
                        second: tuple[int, int, int]) -> None:
    """One more clip, of another batch and size, through the same layer: a tensor the first call kept on self (a
    cached zeros, a mask) breaks it here, where the message can say so, not in a user's run at another size."""
    batch, height, width = second
    try:
        layer.check_size(height, width)
    except ValueError:
        return  # a size the cell refuses on purpose; the first clip's was checked
    state = layer.init_state(batch, height, width, device=torch.device("cpu"), dtype=torch.float32)
    memory = torch.zeros(batch, layer.memory_channels, height, width) if cls.uses_memory else None
    hidden = layer.hidden_channels
    lower = torch.zeros(batch, hidden, height, width) if cls.uses_lower_previous and layer.layer_index > 0 else None
    clips = f"a clip of batch {batch} at {height}x{width} after one of batch {first[0]} at {first[1]}x{first[2]}"
    fix = ("keep nothing of one call's shape on self (a cached zeros, a mask): make such tensors in forward from x, "
           "or in init_state, whose state the network hands back; a size the cell cannot run at is refused in "
           "check_size")
    try:
        output = layer(torch.rand(batch, hidden, height, width), state, memory, lower).output
    except RuntimeError as exc:
        _fail(where, f"forward failed on {clips} ({' '.join(str(exc).split())})", fix)
    want = (batch, hidden, height, width)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != want:
        _fail(where, f"forward's output for {clips} is not (B, hidden_channels, H, W) = {want}", fix)


def _check_other_width_and_kernel(subject: str, cell: str, cls: type[RecurrentCell], hidden: int, kernel_size: int,
                                  num_layers: int, options: dict[str, Any]) -> None:
    """The top layer again, at another hidden width and with each of two kernel sizes: every other check builds
    cells of one width and kernel (8 and 3 unless overridden), so a cell that hard-codes them would pass the kit and
    fail, or silently be another model, at the width and kernel of a real run (64, 5). The top layer, as a lower one
    may reach across the whole frame whatever its kernel (MotionRNN's warps), which leaves nothing to compare."""
    torch.manual_seed(0)
    widths = [w for w in (12, 16) if w != hidden]  # 16 for a cell that refuses 12 (groups of 8, say)
    kernels = sorted({kernel_size, 5 if kernel_size != 5 else 3})
    for width in widths:
        try:
            layer = _build_cell(cell, cls, num_layers - 1, num_layers, width, kernel_size, options)
            break
        except ValueError as exc:
            refused = exc
    else:
        _fail(subject, f"its constructor refuses hidden_channels {' and '.join(map(str, widths))} ({refused})",
              "derive every convolution, split and state from in_channels and hidden_channels: a model's width is "
              "its user's choice (the zoo's models use 64)")
    size = 16
    try:
        layer.check_size(size, size)
    except ValueError:
        return  # a size the cell refuses on purpose; nothing to measure
    reach = {kernel_size: _one_step_reach(subject, layer, cls, f"hidden_channels={width} (the other checks use "
                                          f"{hidden})", "derive every convolution's channels, every split and every "
                                          f"state from in_channels and hidden_channels, never from a constant such "
                                          f"as {hidden}", size)}
    other = next(k for k in kernels if k != kernel_size)
    try:
        layer = _build_cell(cell, cls, num_layers - 1, num_layers, width, other, options)
    except ValueError as exc:
        _fail(subject, f"its constructor refuses kernel_size={other} ({exc})",
              "accept every odd kernel_size: the network passes the model's own to every layer")
    reach[other] = _one_step_reach(subject, layer, cls, f"kernel_size={other} (the other checks use {kernel_size})",
                                   "give every convolution of kernel_size the padding kernel_size // 2, so that it "
                                   "keeps the size (JointConv2d does)", size)
    small_reach, large_reach = reach[kernels[0]], reach[kernels[1]]
    if all(r is None or r >= size // 2 - 1 for r in small_reach):
        return  # every input already reaches across the frame (an attention, say): no kernel could reach farther
    if not any(a is not None and b is not None and b > a for a, b in zip(small_reach, large_reach)):
        farthest = max((r for r in large_reach if r is not None), default=0)
        _fail(subject, f"built with kernel_size={kernels[1]} its output at a pixel depends on no input farther than "
              f"built with kernel_size={kernels[0]} ({farthest} pixels away): it ignores kernel_size",
              "pass kernel_size to the cell's spatial convolutions (with padding kernel_size // 2) instead of a "
              "constant")


def _one_step_reach(subject: str, layer: RecurrentCell, cls: type[RecurrentCell], built: str, fix: str,
                    size: int) -> list[int | None]:
    """One step of a 1-sample clip from a random state, checked as the first clip is; for each input (x, each state
    tensor at the frame's size, the memory), how far from the pixel in the middle lie the pixels that its output
    there depends on (``None`` for an input it does not depend on)."""
    width = layer.hidden_channels
    where = f"{subject}, built with {built}"
    state = layer.init_state(1, size, size, device=torch.device("cpu"), dtype=torch.float32)
    _check_state(where, state, 1, torch.device("cpu"), torch.float32, "init_state(...)")
    state = tuple(torch.rand_like(t).requires_grad_() if t.is_floating_point() else t for t in state)
    x = torch.rand(1, width, size, size, requires_grad=True)
    memory = torch.rand(1, layer.memory_channels, size, size, requires_grad=True) if cls.uses_memory else None
    lower = torch.rand(1, width, size, size) if cls.uses_lower_previous and layer.layer_index > 0 else None
    try:  # copies, which a cell may write in place (the gradient check is another's)
        result = layer(x.clone(), tuple(t.clone() for t in state), None if memory is None else memory.clone(), lower)
    except RuntimeError as exc:
        _fail(where, f"forward failed ({' '.join(str(exc).split())})", fix)
    want = (1, width, size, size)
    if not isinstance(result.output, torch.Tensor) or tuple(result.output.shape) != want:
        shape = tuple(result.output.shape) if isinstance(result.output, torch.Tensor) else type(result.output).__name__
        _fail(where, f"forward's output is {shape}, not (B, hidden_channels, H, W) = {want}", fix)
    if len(result.state) != len(state) or any(a.shape != b.shape for a, b in zip(result.state, state)):
        _fail(where, "forward's state does not have the shapes init_state gives", fix)
    if memory is not None and (result.memory is None or result.memory.shape != memory.shape):
        _fail(where, f"forward's memory is not (B, memory_channels, H, W) = {tuple(memory.shape)}", fix)
    inputs = [t for t in (x, *state, memory) if t is not None and t.requires_grad and t.shape[-2:] == (size, size)]
    if not result.output.requires_grad:
        return [None] * len(inputs)
    grads = torch.autograd.grad(result.output[0, :, size // 2, size // 2].sum(), inputs, allow_unused=True)
    reach: list[int | None] = []
    for grad in grads:
        where_nonzero = None if grad is None else grad.abs().flatten(0, -3).sum(0).nonzero()
        if where_nonzero is None or not len(where_nonzero):
            reach.append(None)
        else:
            reach.append(int((where_nonzero - size // 2).abs().max()))
    return reach


def _check(ok: bool, subject: str, problem: str, fix: str) -> None:
    if not ok:
        _fail(subject, problem, fix)


def check_shapes(name: str, size: int = 16, **overrides: Any) -> None:
    """Forecast shapes, and every layer's output at its schedule's resolution."""
    torch.manual_seed(0)
    model = small(name, **overrides)
    frames = torch.rand(2, 3, model.config.in_channels, size, size)
    future = model(frames, horizon=2)
    want = (2, 2, model.config.in_channels, size, size)
    _check(future.shape == want, f"model {name!r}",
           f"a forecast of 2 frames has shape {tuple(future.shape)}, not {want}",
           "return CellOutput.output with hidden_channels channels at the size the cell received")
    state = model.init_state(2, size, size)
    _, state = model.step(frames[:, 0], state)
    for i, (h, w) in enumerate(model.schedule.sizes(size, size)):
        subject = f"model {name!r}, layer {i} (runs at {h}x{w})"
        _check_state(subject, state.layers[i], 2, frames.device, frames.dtype, "the state after one step")


def check_step_equals_forward(name: str, size: int = 16, **overrides: Any) -> None:
    """The streaming API and the batch forward are one computation."""
    torch.manual_seed(0)
    model = small(name, **overrides).eval()
    frames = torch.rand(2, 3, model.config.in_channels, size, size)
    with torch.no_grad():
        batch = model(frames, horizon=2)
        state = None
        for t in range(3):
            forecast, state = model.step(frames[:, t], state)
        second, _ = model.step(forecast, state)
    streamed = torch.stack([forecast, second], 1)
    _check(torch.allclose(streamed, batch, rtol=1.3e-6, atol=1e-5), f"model {name!r}",
           f"frame-by-frame step() and forward() differ by {float((streamed - batch).abs().max()):.3g}",
           "keep everything a step needs in the state it returns (no hidden attributes on self that change "
           "between calls), and do not behave differently in train() and eval() beyond dropout")


def check_dtype_and_device(name: str, size: int = 16, **overrides: Any) -> None:
    """The model and its state move together: float64 in, float64 state and forecast out."""
    torch.manual_seed(0)
    model = small(name, **overrides).double()
    frames = torch.rand(1, 2, model.config.in_channels, size, size, dtype=torch.float64)
    state = model.init_state(1, size, size)
    for i, (h, w) in enumerate(model.schedule.sizes(size, size)):
        _check_state(f"model {name!r} in float64, layer {i} ({h}x{w})", state.layers[i], 1, frames.device,
                     torch.float64, "init_state(...)")
    forecast, state = model.step(frames[:, 0], state)
    _check(forecast.dtype == torch.float64, f"model {name!r} in float64", f"the forecast is {forecast.dtype}",
           "create every intermediate tensor with the dtype of the input (torch.zeros_like, x.new_zeros)")
    moved = state.to(torch.float32)
    _check(all(t.dtype == torch.float32 for s in moved.layers for t in s), f"model {name!r}",
           "ForecastState.to(float32) left tensors in another dtype", "return the state as a tuple of tensors")
    if torch.cuda.is_available():
        cuda = small(name, **overrides).cuda()
        _check(cuda(frames.float().cuda(), horizon=1).is_cuda, f"model {name!r} on CUDA",
               "the forecast is not on the GPU", "create every intermediate tensor on the input's device")


def check_training_step(name: str, size: int = 16, steps: int = 5, **overrides: Any) -> list[float]:
    """A few Adam steps on one clip lower the loss, and every parameter receives a finite gradient."""
    torch.manual_seed(0)
    model = small(name, **overrides)
    frames = torch.rand(2, 4, model.config.in_channels, size, size)
    teacher = torch.ones(2, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        prediction, aux = model.forward_train(frames, teacher)
        loss = torch.nn.functional.mse_loss(prediction, frames[:, 1:])
        if aux is not None:
            loss = loss + aux
        loss.backward()
        if step == 0:
            for pname, p in model.named_parameters():
                _check(p.grad is not None, f"model {name!r}", f"parameter {pname} received no gradient",
                       "use every submodule you create in forward, or do not create it for layers that skip it "
                       "(branch on self.layer_index / self.num_layers in __init__)")
                # p.grad is a tensor: _check raised for None
                _check(bool(torch.isfinite(p.grad).all()), f"model {name!r}",  # type: ignore[arg-type]
                       f"parameter {pname} has a non-finite gradient",
                       "look for divisions by zero, log of 0 or sqrt of 0 in forward")
        optimizer.step()
        losses.append(loss.item())
    _check(losses[-1] < losses[0], f"model {name!r}", f"the loss did not go down in {steps} Adam steps: {losses}",
           "check that the output depends on the input and the state (gates wired to the right tensors)")
    return losses


def _loss_and_grads(model: Forecaster, frames: torch.Tensor,
                    teacher: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)  # each way of a step that is compared draws the same random numbers (a cell's dropout)
    model.zero_grad(set_to_none=True)
    prediction, aux = model.forward_train(frames, teacher)
    loss = (prediction - frames[:, 1:]).pow(2).mean() + (aux if aux is not None else 0)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _step_difference(first: tuple[torch.Tensor, dict[str, torch.Tensor]],
                     second: tuple[torch.Tensor, dict[str, torch.Tensor]], rtol: float, atol: float) -> str | None:
    """How two training steps differ (the loss or the first gradient that does), or ``None`` if they agree."""
    (loss, grads), (again, regrads) = first, second
    if grads.keys() != regrads.keys():
        return f"the parameters that receive a gradient differ ({', '.join(sorted(grads.keys() ^ regrads.keys()))})"
    for what, a, b in (("the loss", loss, again), *((f"the gradient of {k}", grads[k], regrads[k]) for k in grads)):
        if not torch.allclose(b, a, rtol=rtol, atol=atol):
            return f"{what} differs by {float((a - b).abs().max()):.3g}"
    return None


def _reference_step(subject: str, model: Forecaster, frames: torch.Tensor, teacher: torch.Tensor, rtol: float,
                    atol: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The step that another way of computing it is compared with, run twice: a cell whose numbers are not finite,
    or differ when the very same step is repeated, would otherwise fail the comparison as if the other way were
    wrong, with a bare assertion about tensors that are "not close"."""
    step = _loss_and_grads(model, frames, teacher)
    loss, grads = step
    not_finite = [name for name, grad in grads.items() if not bool(torch.isfinite(grad).all())]
    _check(bool(torch.isfinite(loss)) and not not_finite, subject,
           f"a training step gives a loss of {float(loss):.4g}"
           + (f" and non-finite gradients of {', '.join(not_finite[:3])}" if not_finite else ""),
           "keep every output and state of forward finite: look for divisions by zero, log or sqrt of 0 or of "
           "negative numbers, exp that overflows, or an uninitialised tensor (torch.empty) in forward or init_state")
    difference = _step_difference(step, _loss_and_grads(model, frames, teacher), rtol, atol)
    _check(difference is None, subject, f"the same training step, run twice on the same clip, gives other numbers "
           f"({difference})", "keep everything a step needs in the state it returns: no attribute of self that "
           "changes between calls (a step counter, the previous frame), and no in-place write into the state "
           "forward receives, so that every clip starts afresh")
    return step


def _assert_same_step(first: tuple[torch.Tensor, dict[str, torch.Tensor]],
                      second: tuple[torch.Tensor, dict[str, torch.Tensor]], rtol: float, atol: float,
                      subject: str, ways: str, fix: str) -> None:
    """Two ways of one training step (``ways`` says which) gave the same loss and the same gradient of every
    parameter; else a :class:`ConformanceError` that says which number differs and ``fix``."""
    difference = _step_difference(first, second, rtol, atol)
    _check(difference is None, subject, f"{ways} give other numbers ({difference})", fix)


def check_grad_checkpointing(name: str, size: int = 16, **overrides: Any) -> None:
    """Recomputing each step in the backward pass gives the plain path's loss and gradients, exactly."""
    torch.manual_seed(0)
    model = small(name, **overrides)
    frames = torch.rand(2, 4, model.config.in_channels, size, size)
    teacher = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    subject = f"model {name!r}"
    step = _reference_step(subject, model, frames, teacher, rtol=0, atol=0)
    model.set_grad_checkpointing(True)
    try:
        recomputed = _loss_and_grads(model, frames, teacher)
    finally:
        model.set_grad_checkpointing(False)
    _assert_same_step(step, recomputed, 0, 0, subject, "a training step and the same step recomputed in the backward "
                      "pass (gradient checkpointing)", "compute forward from its arguments and the cell's parameters "
                      "alone, the same way every time, and write nothing in place into the state it receives")


def check_absorbed_embedding(name: str, size: int = 16, **overrides: Any) -> None:
    """The bottom layer gives the same loss and gradients whether its convolutions absorb the embedding or not.

    Only cells with ``convolves_input_only`` are handed an :class:`~msrnn_zoo.cell.EmbeddedFrame`; for the
    others both ways are the same path, so there is nothing to compare. Float64, with forecasts fed back, so
    that the frames need gradients.
    """
    torch.manual_seed(0)
    model = small(name, **overrides).double()
    if not model.cells[0].convolves_input_only:
        return
    frames = torch.rand(2, 4, model.config.in_channels, size, size, dtype=torch.float64)
    teacher = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    subject = f"cell {model.config.cell!r}"
    try:
        step = _reference_step(f"model {name!r}", model, frames, teacher, rtol=1e-9, atol=1e-12)
    except (TypeError, AttributeError) as exc:
        _fail(subject, f"convolves_input_only is True, but the bottom layer used its input "
              f"x outside a convolution ({type(exc).__name__}: {exc})",
              "set convolves_input_only = False (or a property that is False for this layer_index), or feed x only "
              "to JointConv2d / joint_conv2d convolutions, which absorb the embedding")
    model.absorb_embedding = False
    _assert_same_step(step, _loss_and_grads(model, frames, teacher), 1e-9, 1e-12, subject,
                      "the bottom layer's convolutions absorbing the frame's embedding and reading the embedding",
                      "set convolves_input_only = False (or a property that is False for this layer_index), or feed x "
                      "only to JointConv2d / joint_conv2d convolutions, never element-wise or to a plain nn.Conv2d")


def check_zero_states(name: str, size: int = 16, **overrides: Any) -> None:
    """The first step gives the same loss and gradients whether its convolutions leave out the zero states or not.

    Leaving them out is the network's default (:attr:`~msrnn_zoo.network.Forecaster.skip_zero_states`) for states
    the cell makes with :func:`~msrnn_zoo.cell.zeros` and :func:`~msrnn_zoo.cell.zeros_like`. A cell that writes
    such a state in place before convolving it is still right (the mark lapses); this holds the sums equal.
    """
    torch.manual_seed(0)
    model = small(name, **overrides).double()
    frames = torch.rand(2, 4, model.config.in_channels, size, size, dtype=torch.float64)
    teacher = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    subject = f"model {name!r}"
    step = _reference_step(subject, model, frames, teacher, rtol=1e-9, atol=1e-12)
    model.skip_zero_states = False
    _assert_same_step(step, _loss_and_grads(model, frames, teacher), 1e-9, 1e-12, subject,
                      "the first step leaving out the zero states of its joint convolutions and convolving them",
                      "mark a tensor as zeros (msrnn_zoo.cell.zeros, zeros_like, mark_zero) only while it holds zeros")


def check_compiled_cells(name: str, size: int = 16, **overrides: Any) -> None:
    """The cell compiles whole (:meth:`~msrnn_zoo.network.Forecaster.set_compile_cells`), and its compiled training
    step and forecast give the eager loss, gradients and frames.

    Traced with the ``aot_eager`` backend: Dynamo and AOTAutograd, as for inductor, without generating kernels, so
    it takes seconds. Not part of :func:`run_conformance`: a cell that cannot be traced whole still runs (eagerly,
    with a warning); a plugin's test says which it is. Also checks the compiled bf16 step with the clip's weight
    copies against the one without (:mod:`msrnn_zoo.compiled_cells`), to the bit.
    """
    torch.manual_seed(0)
    model = small(name, **overrides).double()
    model.cpu_channels_last = False  # the GPU's layout; a cell mixing layouts on the CPU only adds variants to trace
    frames = torch.rand(2, 4, model.config.in_channels, size, size, dtype=torch.float64)
    teacher = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    step = _loss_and_grads(model, frames, teacher)
    with torch.no_grad():
        forecast = model(frames[:, :2], horizon=2)
    model.set_compile_cells(True)
    with compiled_cells.backend("aot_eager"), warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*cannot be (traced whole|compiled)")
        try:
            compiled = _loss_and_grads(model, frames, teacher)
            with torch.no_grad():
                compiled_forecast = model(frames[:, :2], horizon=2)
        except UserWarning as exc:
            _fail(f"cell {model.config.cell!r}", f"Dynamo cannot trace it whole: {exc}",
                  "keep the cell's forward traceable (no torch.compiler.disable, .item() or data-dependent Python "
                  "branches on tensor values); with compiled cells it would run eagerly")
    _assert_same_step(step, compiled, 1e-9, 1e-12, f"model {name!r}", "the eager and the compiled training step",
                      "compute forward from its arguments and the cell's parameters alone, the same way whether "
                      "traced or not (no Python state on self, no branch on torch.compiler.is_compiling())")
    torch.testing.assert_close(compiled_forecast, forecast, rtol=1e-9, atol=1e-12)
    _check_clip_weight_copies(name, size, **overrides)


def _check_clip_weight_copies(name: str, size: int, **overrides: Any) -> None:
    """Under bf16 autocast a compiled cell reads the clip's half-precision copies of its convolutions' weights: the
    same training step to the bit as when it is handed the float32 parameters and casts them itself (forecasts read
    the same copies without a gradient: ``tests/test_fast_path.py``)."""
    torch.manual_seed(0)
    model = small(name, **{"num_layers": 2, **overrides}).set_compile_cells(True)  # the bottom layer keeps its own
    model.cpu_channels_last = False
    frames = torch.rand(2, 3, model.config.in_channels, size, size)
    teacher = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    results = []
    with compiled_cells.backend("aot_eager"), warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*cannot be (traced whole|compiled)")  # both eager: nothing checked
        for way in (contextlib.nullcontext, compiled_cells.weights_cast_per_call):
            try:
                with way(), torch.autocast("cpu", dtype=torch.bfloat16):
                    results.append(_loss_and_grads(model, frames, teacher))
            except UserWarning as exc:
                _fail(f"cell {model.config.cell!r}", f"Dynamo cannot trace it whole under bf16 autocast: {exc}",
                      "keep the cell's forward traceable under autocast too; with compiled cells it would run eagerly")
    (loss, grads), (again, regrads) = results
    same = torch.equal(loss, again) and grads.keys() == regrads.keys() and all(torch.equal(grads[k], regrads[k])
                                                                                for k in grads)
    _check(same, f"model {name!r}", "under bf16 autocast its compiled cell gives other numbers when it reads the "
           "clip's bf16 copies of the weights of its nn.Conv2d and JointConv2d modules than when it casts them itself",
           "use those weights only in the convolutions of their modules; a weight that enters other arithmetic "
           "belongs to a module of another type (or a submodule of one)")


def concatenations_kept(name: str, size: int = 16, **overrides: Any) -> int:
    """Bytes of concatenations autograd keeps for the backward of one training step of a small ``name``.

    A cell that builds ``torch.cat([c, m])`` to convolve it makes autograd keep that copy of ``c`` and ``m``
    for every layer and time step, although both are kept anyway; :func:`~msrnn_zoo.cell.joint_conv2d` and
    :class:`~msrnn_zoo.cell.JointConv2d` convolve the parts instead. A plugin's test asserts this is 0 when its
    cell keeps no such copy (not part of the conformance kit: a concatenation whose parts nothing else keeps
    costs nothing extra).
    """
    torch.manual_seed(0)
    model = small(name, **overrides).train()
    frames, teacher = training_clip(model, 1, 4, size, size)
    return saved_bytes_by_op(lambda: model.forward_train(frames, teacher)).get("CatBackward0", 0)


def bytes_saved_by_recipes(name: str, size: int = 8, frames: int = 5, batch: int = 2, **overrides: Any) -> int:
    """Bytes that the inputs a cell keeps as recipes (:func:`~msrnn_zoo.cell.recomputable`) save in one training
    step of a small ``name``; fails unless the gradients are those of the kept tensors, to the bit.

    A plugin's test asserts how many feature maps its recipes save, so that a change that makes a source
    unkept (and the recipe worthless) or breaks a recipe shows.
    """
    torch.manual_seed(0)
    model = small(name, **overrides).train()
    clips, teacher = torch.rand(batch, frames, model.config.in_channels, size, size), torch.ones(batch, frames - 1)
    results = []
    for context in (contextlib.nullcontext, recipes_off):
        with context():
            model.zero_grad()
            prediction, aux = model.forward_train(clips, teacher)
            (prediction.square().sum() + (aux if aux is not None else 0)).backward()
            kept = saved_bytes_by_op(lambda: model.forward_train(clips, teacher))
        results.append(([p.grad.clone() for p in model.parameters() if p.grad is not None], sum(kept.values())))
    (with_recipes, kept_with_recipes), (plain, kept_plain) = results
    _check(len(with_recipes) == len(plain) and all(torch.equal(a, b) for a, b in zip(with_recipes, plain)),
           name, "its gradients differ when the inputs kept as recipes are kept as tensors",
           "make each recipe's function compute exactly what the forward computed (same operations, no randomness)")
    return kept_plain - kept_with_recipes


def run_conformance(cell: str, size: int = 16, **overrides: Any) -> None:
    """Every check, on the cell alone and on both the single-scale and the multi-scale model of ``cell``.

    ``overrides`` (model options and the cell's own, as for :func:`~msrnn_zoo.factory.create`) apply to the cell
    alone too: a cell may break the contract only with some option.
    """
    check_cell_contract(cell, **overrides)
    for name in (cell, f"ms-{cell}"):
        check_absorbed_embedding(name, size, **overrides)  # first: the others run with the embedding absorbed
        check_zero_states(name, size, **overrides)
        check_shapes(name, size, **overrides)
        check_step_equals_forward(name, size, **overrides)
        check_dtype_and_device(name, size, **overrides)
        check_training_step(name, size, **overrides)
        check_grad_checkpointing(name, size, **overrides)


def load_fixture(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a parity fixture; a missing, damaged or foreign file is an error naming it (it is
    a user's ``convert --reference`` too)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No reference file at {path}: give a safetensors file with the 'input' and "
                                "'output' tensors of the original code.")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except Exception as exc:  # safetensors' own error types, for a truncated or foreign file
        raise ValueError(f"{path} is not a readable safetensors file ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}): a reference holds the original code's 'input' and "
                         "'output' tensors in the format of the zoo's parity fixtures.") from exc


def parity_error(path: str | Path, name: str | None = None, **options: Any) -> float:
    """Max |difference| between the original's test-mode output and ours, from the original's weights.

    The original's test mode feeds the ground truth for the first ``in_len`` steps and its own forecast
    afterwards: in our terms, ``forward_train`` with a teacher mask of ones then zeros.
    """
    from .convert import from_original

    tensors, meta = load_fixture(path)
    name = name or meta["model"]
    weights = {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}
    model = from_original(weights, name, kernel_size=int(meta.get("kernel_size", 3)), **options).eval()
    return parity_against(model, tensors["input"], tensors["output"], int(meta["in_len"]))


def parity_against(model: Forecaster, inputs: torch.Tensor, outputs: torch.Tensor, in_len: int) -> float:
    """Max |difference| between ``model`` and the original's outputs on the same inputs.

    ``inputs`` (T, B, C, H, W) and ``outputs`` (T-1, B, C, H, W) are time-major, as the original stores them.
    """
    model = model.eval()
    frames = inputs.transpose(0, 1).contiguous().to(model.embed.weight.dtype)
    b, t = frames.shape[:2]
    teacher = torch.zeros(b, t - 1)
    teacher[:, :in_len] = 1.0
    with torch.no_grad():
        prediction, _ = model.forward_train(frames, teacher)
        future = model(frames[:, :in_len], horizon=t - in_len)
    reference = outputs.transpose(0, 1).to(prediction.dtype)
    if reference.shape != prediction.shape:
        raise ValueError(f"The reference outputs have shape {tuple(outputs.shape)}, but the model predicts "
                         f"{tuple(prediction.transpose(0, 1).shape)} from its inputs (T-1, B, C, H, W).")
    return max(float((prediction - reference).abs().max()), float((future - reference[:, in_len - 1:]).abs().max()))


def check_dataset(name: str, *, root: str | Path | None = None, source: str | None = None, clips: int = 4,
                  **options: Any) -> None:
    """The contract of a dataset plugin, on every split of every protocol of ``name`` read from ``root``.

    ``train`` checks only a split's first clip: a clip further in of another size fails deep in batching, one
    of 0-255 values trains silently on wrong numbers, a ``len`` beyond the clips fails at the end of an epoch
    and a clip drawn afresh at every read makes the test scores change from one run to the next. This reads
    the first, the last and ``clips`` in between of each split, twice, from two datasets the factory built,
    so a plugin's test (on small files it writes itself) finds these before a user's run does.
    """
    from . import datasets
    from .plugins import records
    from .registry import get_dataset

    entry = get_dataset(name)
    subject = f"dataset {name!r} ({entry.plugin})"
    for record in records():
        for conflict in record.conflicts:
            if conflict.startswith(f"dataset {name!r} is taken by"):
                _fail(subject, f"{record.key} registers a dataset of this name too, and was not added ({conflict})",
                      "give your dataset a name of its own in its DatasetInfo")
    info = entry.info
    for protocol in info.protocols:
        want = (protocol.frames, protocol.channels, protocol.height, protocol.width)
        for split in protocol.splits:
            where = f"{subject}, {protocol.name}/{split}"
            try:
                first, second = (datasets.load_dataset(name, split=split, source=source, root=root,
                                                       protocol=protocol.name, **options) for _ in range(2))
            except (ValueError, FileNotFoundError) as exc:
                _fail(where, f"the split cannot be opened ({exc})",
                      "give check_dataset a root (and source) holding data for every split the protocol declares, "
                      "or declare only the splits the dataset has in ClipProtocol(splits=...)")
            count = len(first)  # type: ignore[arg-type]
            _check(isinstance(count, int) and count >= 1, where, f"len() is {count!r}",
                   "give the check data with at least one clip in every split; len() counts the clips")
            picks = sorted({0, count - 1, *range(0, count, max(1, count // max(1, clips)))})
            shape: tuple[int, ...] | None = None  # the split's first clip's: a batch stacks clips of one shape
            for index in picks:
                try:
                    clip, again = first[index], second[index]
                except IndexError as exc:
                    _fail(where, f"len() is {count} but clip {index} cannot be read ({exc!r})",
                          "make __len__ count exactly the clips __getitem__ gives")
                item = f"{where}, clip {index}"
                _check(isinstance(clip, torch.Tensor), item, f"the item is a {type(clip).__name__}",
                       "return the clip alone, a tensor (T, C, H, W), from __getitem__ (no label, no tuple)")
                _check(clip.dtype == torch.float32, item, f"its dtype is {clip.dtype}",
                       "give float32 frames in [0, 1] (uint8 frames: .float() / 255)")
                # longer clips are allowed (train reads their first in_frames + out_frames), shorter ones are not
                _check(clip.dim() == 4 and tuple(clip.shape[1:]) == want[1:] and clip.shape[0] >= want[0], item,
                       f"its shape is {tuple(clip.shape)}, but the protocol declares (T, C, H, W) = {want} (T at "
                       "least)", "give clips of at least the protocol's frames (in_frames + out_frames) and exactly "
                       "its channels, height and width, or declare what the clips have")
                shape = shape or tuple(clip.shape)
                _check(tuple(clip.shape) == shape, item,
                       f"its shape is {tuple(clip.shape)}, but the split's first clip has {shape}",
                       "give every clip of a split the same number of frames (a batch stacks them)")
                _check(bool(torch.isfinite(clip).all()), item, "it holds NaN or Inf", "clean the frames in prepare")
                low, high = float(clip.min()), float(clip.max())
                _check(low >= 0.0 and high <= 1.0, item, f"its values lie in [{low:g}, {high:g}], not [0, 1]",
                       "scale the frames to [0, 1] in the factory (frames of 0-255: divide by 255)")
                _check(isinstance(again, torch.Tensor) and torch.equal(clip, again), item,
                       "it differs between two reads of the same split",
                       "draw any randomness from a generator seeded by the clip's index, so a split is the same "
                       "clips at every read (test scores depend on it)")
            to_physical = datasets.to_physical(name, root)
            if to_physical is not None:
                physical = to_physical(first[0])
                _check(isinstance(physical, torch.Tensor) and physical.shape == first[0].shape
                       and bool(torch.isfinite(physical).all()), where,
                       f"its Scaling.inverse of a clip gives {type(physical).__name__} "
                       f"{tuple(getattr(physical, 'shape', ()))}",
                       "return a finite tensor of the clip's shape from Scaling.inverse(values, params)")
            batch = torch.stack([first[0]])
            for baseline, fn in entry.capabilities.baselines.items():
                for length in sorted({1, protocol.in_frames}):
                    horizon = protocol.out_frames
                    forecast = fn(batch[:, :length], horizon)
                    _check(isinstance(forecast, torch.Tensor) and tuple(forecast.shape) == (1, horizon, *want[1:]),
                           where, f"baseline {baseline!r} from {length} frame(s) gives "
                           f"{tuple(getattr(forecast, 'shape', ()))} for a horizon of {horizon}",
                           "return (B, horizon, C, H, W) from fn(context, horizon), for any context length >= 1")
