"""The one network of the zoo: embedding, a stack of any cell laid out by any scale schedule, head.

Nothing here knows a model by name. A cell says what it reads (zigzag memory, the layer below's previous
output, an auxiliary loss) through :class:`~msrnn_zoo.cell.RecurrentCell`'s attributes; the schedule says
where each layer runs. Everything is built on :meth:`Forecaster.step` -- one frame in, one forecast out --
so the batch forward, the teacher-forced training path and streaming inference share one code path.
"""

from __future__ import annotations

import json
import operator
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .cell import RecurrentCell, State
from .compiled_cells import run_cell, run_compiled_cell
from .embedded_frame import EmbeddedFrame
from .graphs import ClipGraphs
from .hub import HubMixin
from .joint_conv import weight_casts_per_clip
from .schedule import ScaleSchedule, build_schedule
from .zero_states import unmark_zero, zero_like_source, zeros

FAST_PATHS: tuple[str | None, ...] = (None, "compile", "cudagraph", "clip-graph")
"""How a clip may run: eagerly, each step compiled, each step compiled and replayed as CUDA graphs, or the whole
clip recorded eagerly as CUDA graphs and replayed (see ``set_fast_path``)."""
COMPILED_PATHS = ("compile", "cudagraph")
"""The fast paths that run a ``torch.compile`` of one step."""
GRAPH_PATHS = ("cudagraph", "clip-graph")
"""The fast paths that record CUDA graphs: they need a GPU and cannot recompute steps (gradient checkpointing)."""

MAX_SIZE = 2**31 - 1
"""The largest channel count, layer count or kernel size a config may give: beyond it PyTorch cannot even compute
the size of a weight, and no model comes anywhere near it."""


def _switch(enable: Any, setter: str) -> bool:
    """``enable`` as a bool, refusing anything else: ``bool("no")`` is ``True`` and would turn the option on."""
    if isinstance(enable, bool):
        return enable
    if str(getattr(enable, "dtype", "")) in ("bool", "torch.bool") and tuple(getattr(enable, "shape", (0,))) == ():
        return bool(enable)  # a NumPy or PyTorch boolean scalar
    raise TypeError(f"{setter} takes True or False, got {enable!r} ({type(enable).__name__}); "
                    f"e.g. {setter}(False) to turn it off.")


def _horizon(horizon: Any) -> int:
    """``horizon`` as a Python ``int``: an integer of NumPy or a one-element integer tensor is one too (refused, it
    read "must be an integer, got np.int64(10)"); a bool, a float (``10.0``) or a value below 1 is refused."""
    is_bool = isinstance(horizon, bool) or str(getattr(horizon, "dtype", "")) in ("bool", "torch.bool")
    try:
        value = None if is_bool else operator.index(horizon)
    except TypeError:
        value = None
    if value is None or value < 1:
        raise ValueError(f"horizon must be an integer >= 1 (frames to forecast), got {horizon!r}.")
    return value


@dataclass
class ForecasterConfig:
    """Everything needed to rebuild a model; round-trips through JSON (``config.json`` on the Hub)."""

    cell: str
    schedule: str = "single"
    in_channels: int = 1
    hidden_channels: int = 64
    num_layers: int = 6
    kernel_size: int = 3
    schedule_options: dict[str, Any] = field(default_factory=dict)
    cell_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, what: str = "model config") -> None:
        """Raise ``ValueError`` naming the field for a value of the wrong type or out of range."""
        from .validation import check_fields

        check_fields(type(self), {f.name: getattr(self, f.name) for f in fields(self)}, what)
        for name in ("in_channels", "hidden_channels", "num_layers", "kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{what}: {name} must be at least 1, got {getattr(self, name)}.")
            if getattr(self, name) > MAX_SIZE:  # else PyTorch's overflow (a TypeError with C++ frames) or one of its
                # RuntimeErrors, from a config.json that no model could have (a crafted or mistyped one)
                raise ValueError(f"{what}: {name} must be at most {MAX_SIZE}, got {getattr(self, name)}; no model "
                                 "has that many. Correct the value.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str = "model config") -> ForecasterConfig:
        """A config read from JSON; unknown keys and values of the wrong type are ``ValueError`` naming them, and
        saying so when a newer msrnn-zoo (or cell plugin) wrote it. The versions that wrote it
        (:data:`~msrnn_zoo.versions.WRITTEN_BY`, which ``save_pretrained`` records beside the fields) are no field."""
        from .versions import upgrade_noted, without_written_by

        with upgrade_noted(data):
            return cls._from_fields(without_written_by(data), what)

    @classmethod
    def _from_fields(cls, data: dict[str, Any], what: str) -> ForecasterConfig:
        from .validation import check_fields

        check_fields(cls, data, what)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown model config keys {unknown} in {what}; "
                             f"a config has: {', '.join(sorted(known))}.")
        config = cls.__new__(cls)
        for f in fields(cls):
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            setattr(config, f.name, data.get(f.name, default))
        config.validate(what)
        return config

    @classmethod
    def from_json(cls, text: str) -> ForecasterConfig:
        """A config from the text of a ``config.json``; text that is not JSON is a ``ValueError`` saying where."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise TypeError(f"from_json takes the text of a config.json, got {type(text).__name__}"
                            + ("; for a dict use ForecasterConfig.from_dict." if isinstance(text, dict) else "."))
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"The model config is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                             f"{exc.colno}); pass the text of a config.json, as to_json writes it.") from None
        return cls.from_dict(data)


@dataclass
class ForecastState:
    """The recurrent state of the whole stack between two frames.

    ``layers`` holds each cell's own state, ``memory`` the zigzag memory on its way from the top layer
    back to the bottom one, ``outputs`` each layer's last output (kept only when a cell reads the
    previous output of the layer below).
    """

    layers: list[State]
    memory: torch.Tensor | None = None
    outputs: list[torch.Tensor] | None = None

    def map(self, fn: Any) -> ForecastState:
        return ForecastState(
            layers=[tuple(fn(t) for t in s) for s in self.layers],
            memory=None if self.memory is None else fn(self.memory),
            outputs=None if self.outputs is None else [fn(t) for t in self.outputs],
        )

    def to(self, *args: Any, **kwargs: Any) -> ForecastState:
        """Move every tensor, like ``Tensor.to`` (device and/or dtype)."""
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> ForecastState:
        """Cut the graph: for truncated back-propagation through long streams."""
        return self.map(torch.Tensor.detach)


def _whole_sizes(**sizes: Any) -> list[int]:
    """``init_state``'s sizes as ints (NumPy's too), or an error that names the one at fault: a float reached
    ``torch.zeros`` as "takes 1 positional argument but 4 were given", a negative batch as "Dimension size must be
    non-negative". A few checks of Python numbers, once per clip and outside the compiled step."""
    whole = []
    for name, value in sizes.items():
        try:
            if isinstance(value, bool):
                raise TypeError
            number = operator.index(value)
        except TypeError:
            raise TypeError(f"init_state's {name} must be a whole number (int), got {value!r} "
                            f"({type(value).__name__}); pass int({name}), or take it from frames.shape.") from None
        if number < 0:
            raise ValueError(f"init_state's {name} must not be negative, got {number}.")
        whole.append(number)
    return whole


class Forecaster(HubMixin, nn.Module):
    """A stacked convolutional RNN: any :class:`RecurrentCell` along any :class:`ScaleSchedule`.

    Frames are batch-first ``(B, T, C, H, W)`` in [0, 1]. The 1x1 embedding lifts ``C`` to the hidden
    width, every layer runs one cell at its schedule's resolution, the 1x1 head maps the top layer back
    to ``C`` channels: the forecast of the next frame.
    """

    def __init__(self, config: ForecasterConfig, cell_class: type[RecurrentCell]) -> None:
        super().__init__()
        if config.in_channels < 1 or config.hidden_channels < 1:
            raise ValueError(f"Channels must be positive, got in_channels={config.in_channels}, "
                             f"hidden_channels={config.hidden_channels}.")
        self.config = config
        self.cell_class = cell_class
        self.schedule: ScaleSchedule = build_schedule(config.schedule, config.num_layers, config.schedule_options)
        self.levels = self.schedule.levels()
        self.skips = [self.schedule.skip_source(i) for i in range(config.num_layers)]
        hidden = config.hidden_channels
        self.embed = nn.Conv2d(config.in_channels, hidden, kernel_size=1)
        try:
            self.cells = nn.ModuleList(
                cell_class(hidden, hidden, config.kernel_size, layer_index=i, num_layers=config.num_layers,
                           **config.cell_options)
                for i in range(config.num_layers)
            )
        except TypeError as exc:
            if config.cell_options:
                raise ValueError(f"Cell {config.cell!r} rejected its options {config.cell_options}: {exc}") from exc
            # no option to blame: the cell class itself cannot be built the way every cell is
            raise ValueError(f"Cell {config.cell!r} ({cell_class.__module__}.{cell_class.__qualname__}) cannot be "
                             f"built the way the network builds every cell ({exc}): its plugin breaks the cell "
                             f"contract; msrnn_zoo.testing.check_cell_contract({config.cell!r}) says how to fix "
                             "it.") from exc
        except RuntimeError as exc:  # sizes that cannot be allocated
            raise ValueError(f"Cell {config.cell!r} could not be built with hidden_channels={hidden}, "
                             f"kernel_size={config.kernel_size}: {str(exc).splitlines()[0]}") from exc
        self.head = nn.Conv2d(hidden, config.in_channels, kernel_size=1)
        aux = cell_class.auxiliary_loss
        self.aux_loss = aux(hidden) if aux is not None else None
        self.keeps_outputs = any(c.uses_lower_previous for c in self.cells)
        self.uses_memory = any(c.uses_memory for c in self.cells)
        self.grad_checkpointing = False
        self.channels_last = False
        self.cpu_channels_last = True
        """Activations (states, gates) in channels-last on the CPU even without :meth:`set_channels_last`: oneDNN's
        convolutions run faster in it there (``benchmarks/options.py --options plain,cpu-contiguous``); the
        weights keep their layout. ``False`` keeps every tensor contiguous (NCHW)."""
        self.absorb_embedding = True
        """Let the bottom layer's convolutions absorb the 1x1 embedding when its cell allows it
        (:attr:`~msrnn_zoo.cell.RecurrentCell.convolves_input_only`): the same numbers up to float rounding, with
        about half the multiply-adds in that layer's input convolutions (:class:`~msrnn_zoo.cell.EmbeddedFrame`).
        ``False`` computes the embedding on its own, only to measure what absorbing it saves."""
        self.skip_zero_states = True
        """Let the first step's convolutions leave out the states, which are zero then
        (:func:`~msrnn_zoo.cell.mark_zero`): the same numbers up to float rounding, with 1.4-3.7% fewer floating-point
        operations in a training step of 10 -> 10 frames (docs/speed.md). ``False`` convolves them, only to measure
        what that saves."""
        self.compile_cells = False
        """Whether each layer's cell runs compiled (:meth:`set_compile_cells`)."""
        self.fast_path: str | None = None
        self._fast_step: Any = None
        self._clip_graphs: ClipGraphs | None = None

    # ---------------------------------------------------------------- options
    def set_grad_checkpointing(self, enable: bool = True) -> Forecaster:
        """Recompute each time step in the backward pass instead of keeping its activations (timm's name).

        Training then keeps, per step, only what flows between steps (the recurrent state and the
        forecast) instead of every gate of every layer, at the cost of a second forward pass of each step
        during the backward. Losses and gradients are exactly those of the plain path; it applies wherever
        autograd records a clip (``forward_train``, or ``forward`` with gradients on). Returns the model, like
        ``to`` (timm's returns ``None``).
        """
        self.grad_checkpointing = _switch(enable, "set_grad_checkpointing")
        return self

    def set_fast_path(self, mode: str | None) -> Forecaster:
        """Run clips through a faster path: ``"compile"``, ``"cudagraph"``, ``"clip-graph"`` or ``None`` (eager).

        What is compiled is one step of the whole stack (:meth:`_step`), not the unrolled clip, so the
        compile time does not grow with the number of frames and one compiled step serves training,
        ``forward`` and ``step``. ``"compile"`` is ``torch.compile`` (inductor fuses each cell's element-wise
        gate arithmetic into a few kernels; works on the CPU and on GPUs); ``"cudagraph"`` also records
        every step as a CUDA graph and replays it (``mode="reduce-overhead"``), which removes the per-kernel
        launch cost on a GPU; it needs CUDA and cannot be combined with gradient checkpointing. The first
        steps pay the compilation (and the capture); the numbers are those of the eager path up to float
        rounding. All models of a process share the compiled step's cache: past PyTorch's recompile limit
        (8 models, shapes or grad modes) it warns and runs the step eagerly.

        ``"clip-graph"`` compiles nothing: the first clip of each shape runs eagerly a few times, then the
        whole clip -- every step's forward, and for training every step's backward -- is recorded as CUDA
        graphs and replayed from then on (:mod:`msrnn_zoo.graphs`). The warm-up takes seconds and the numbers
        are the eager path's. It applies to ``forward_train`` and ``forward`` on a GPU; ``step`` and CPU
        tensors run eagerly. ``"none"`` (as the command line spells it) is ``None``. Returns the model, like ``to``.
        """
        if mode == "none":
            mode = None
        if mode not in FAST_PATHS:
            raise ValueError(f"Unknown fast path {mode!r}; use one of {', '.join(map(repr, FAST_PATHS))}.")
        if mode in GRAPH_PATHS and not torch.cuda.is_available():
            raise ValueError(f"The {mode!r} fast path records CUDA graphs and needs a GPU; PyTorch sees none "
                             "here. Use fast path 'compile' (or none) on the CPU.")
        if mode in COMPILED_PATHS and self.compile_cells:
            raise ValueError(f"The {mode!r} fast path compiles the whole step, cells included; turn compiled cells "
                             f"off first (set_compile_cells(False), no --compile-cells), or use fast path "
                             "'clip-graph' or none with them.")
        self.fast_path = mode
        for cell in self.cells:
            cell.set_fast_path(mode)  # type: ignore[operator]  # a ModuleList yields Modules to mypy
        self._fast_step = None  # compiled on first use, for this model (see _compiled_step)
        self._clip_graphs = ClipGraphs() if mode == "clip-graph" else None
        return self

    def set_compile_cells(self, enable: bool = True) -> Forecaster:
        """``torch.compile`` each layer's cell, leaving the rest of the step eager ("regional" compilation).

        Inductor fuses a cell's element-wise gate arithmetic (and its backward) into a few kernels around the
        convolutions, which stay cuDNN's or oneDNN's: fewer passes over memory and fewer launches. The layers
        of one class share the compiled code, so a stack compiles once per size (and per grad mode), not once
        per layer. It composes with the eager path and with fast path ``"clip-graph"``, which then records the
        fused kernels; the ``"compile"`` and ``"cudagraph"`` fast paths compile the whole step already. The
        first clip pays the compilation; the numbers are the eager path's up to float rounding. Returns the
        model, like ``to``.
        """
        enable = _switch(enable, "set_compile_cells")
        if enable and self.fast_path in COMPILED_PATHS:
            raise ValueError(f"The {self.fast_path!r} fast path compiles the whole step, cells included; compiled "
                             "cells go with fast path 'clip-graph' or none (--fast-path none, set_fast_path(None)); "
                             f"or keep the {self.fast_path!r} fast path alone.")
        self.compile_cells = enable
        return self

    def set_channels_last(self, enable: bool = True) -> Forecaster:
        """Keep weights and every recurrent state in the channels-last memory layout (NHWC), on every device.

        The same computation in another layout (up to float rounding): on GPUs, convolutions in half precision
        can run faster in it. On the CPU the activations are channels-last already by default
        (:attr:`cpu_channels_last`); this also converts the weights. Returns the model, like ``to``.
        """
        self.channels_last = enable = _switch(enable, "set_channels_last")
        return self.to(memory_format=torch.channels_last if enable else torch.contiguous_format)

    # ---------------------------------------------------------------- checks
    def check_frames(self, frames: torch.Tensor, *, what: str = "frames") -> None:
        """Raise ``ValueError`` saying what is wrong with an input clip, before any work is done."""
        self._check_clip_form(frames, what)
        if not torch.isfinite(frames).all():
            raise self._not_finite(what)

    def _check_training_values(self, frames: torch.Tensor, teacher: torch.Tensor) -> None:
        """The values of a training clip and its teacher mask, in one read back from the device (a method of its
        own, as :meth:`check_frames` is, so that a user's ``torch.compile`` breaks its graph only in here). Mixed in as
        they are, a mask value of 2 or -1 extrapolates past the truth and a NaN makes every later step NaN."""
        in_range = ((teacher >= 0) & (teacher <= 1)).all()  # NaN fails both comparisons
        if not (torch.isfinite(frames).all() & in_range):
            if not in_range:
                raise ValueError("teacher mask values must be in [0, 1] (1: feed the true frame, 0: the model's own "
                                 f"forecast), with no NaN; got values from {teacher.min().item()} to "
                                 f"{teacher.max().item()}.")
            raise self._not_finite("frames")

    @staticmethod
    def _not_finite(what: str) -> ValueError:
        return ValueError(f"{what} contain NaN or Inf values; clean or mask them before forecasting.")

    def _check_clip_form(self, frames: torch.Tensor, what: str) -> None:
        """All of :meth:`check_frames` but the values: what can be checked without reading from the device."""
        if not isinstance(frames, torch.Tensor):
            raise ValueError(f"{what} must be a torch.Tensor of shape (B, T, C, H, W), got {type(frames).__name__}; "
                             f"convert it with torch.as_tensor({what}), as floats in [0, 1].")
        if frames.dim() != 5:
            raise ValueError(f"{what} must have shape (B, T, C, H, W) (batch-first), got {tuple(frames.shape)}.")
        _, t, c, h, w = frames.shape
        if t < 1:
            raise ValueError(f"{what} must hold at least 1 input frame, got T={t}.")
        if c != self.config.in_channels:
            raise ValueError(f"{what} have {c} channels but this model was built for "
                             f"in_channels={self.config.in_channels}.")
        if not frames.is_floating_point():
            raise ValueError(f"{what} must be floating point in [0, 1], got dtype {frames.dtype}; "
                             f"{self._to_float_advice(frames.dtype)}.")
        self._check_dtype(frames, what)
        if frames.device != self.embed.weight.device:
            raise ValueError(f"{what} are on {frames.device} but the model is on {self.embed.weight.device}; "
                             "move one of them (frames.to(device) or model.to(device)).")
        self.check_size(h, w)

    @staticmethod
    def _to_float_advice(dtype: torch.dtype) -> str:
        """How to make frames of ``dtype`` real floats in [0, 1]: "divide uint8 frames by 255" said of complex or
        boolean frames sent the user to do something that cannot help."""
        if dtype.is_complex:
            return "the model forecasts real frames: pass the real part (frames.real) or the magnitude " \
                   "(frames.abs()), scaled to [0, 1]"
        if dtype == torch.bool:
            return "convert a mask with frames.float()"
        if dtype == torch.uint8:
            return "divide uint8 frames by 255"
        return "convert them with frames.float() and divide by their largest possible value"

    def _check_dtype(self, frames: torch.Tensor, what: str) -> None:
        """Frames in the weights' precision, unless autocast chooses the precision of each operation."""
        weight = self.embed.weight
        if frames.dtype != weight.dtype and not torch.is_autocast_enabled(frames.device.type):
            raise ValueError(f"The dtype of {what} is {frames.dtype}, but the model's weights are {weight.dtype}; "
                             f"convert one of them ({what}.to({weight.dtype}) or model.to({frames.dtype})), or run "
                             "under torch.autocast for mixed precision.")

    def check_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` unless the schedule and every cell can run at ``height x width``.

        The message ends with the nearest size that passes every check together: the schedule's and a cell's
        suggestions would each ignore the other's constraints (MotionRNN's half-resolution MotionGRU on a
        3-level pyramid needs a multiple of 8, not the pyramid's 4).
        """
        try:
            self._check_size(height, width)
        except ValueError as exc:
            nearest = self.nearest_size(height, width)
            if nearest is None:
                raise
            raise ValueError(f"{exc} The nearest size this model accepts: {nearest[0]}x{nearest[1]}.") from None

    def _check_size(self, height: int, width: int) -> None:
        for cell, (h, w) in zip(self.cells, self.schedule.sizes(height, width)):
            cell.check_size(h, w)  # type: ignore[operator]  # a ModuleList yields Modules to mypy

    def nearest_size(self, height: int, width: int, reach: int = 1024) -> tuple[int, int] | None:
        """The size nearest ``height x width`` (cropping on a tie) that the model accepts, ``None`` if none is near.

        Height and width are searched one at a time, each as a square, then checked together, so that a
        constraint that couples them still never gets a size suggested that the model would refuse.
        """

        def accepts(h: int, w: int) -> bool:
            try:
                self._check_size(h, w)
            except ValueError:
                return False
            return True

        def nearest(n: int) -> int | None:
            for distance in range(reach + 1):
                for candidate in (n - distance, n + distance):
                    if candidate >= 1 and accepts(candidate, candidate):
                        return candidate
            return None

        h, w = nearest(height), nearest(width)
        return (h, w) if h is not None and w is not None and accepts(h, w) else None

    def _nhwc(self, device: torch.device) -> bool:
        """Whether activations on ``device`` run in channels-last (the option, or the CPU's default)."""
        return self.channels_last or (self.cpu_channels_last and device.type == "cpu")

    # ---------------------------------------------------------------- state
    def init_state(self, batch: int, height: int, width: int, *, device: torch.device | None = None,
                   dtype: torch.dtype | None = None) -> ForecastState:
        """The state before the first frame: zeros everywhere, at every layer's resolution."""
        batch, height, width = _whole_sizes(batch=batch, height=height, width=width)
        self.check_size(height, width)
        device = device or self.embed.weight.device
        dtype = dtype or self.embed.weight.dtype
        sizes = self.schedule.sizes(height, width)
        layers = [cell.init_state(batch, h, w, device=device, dtype=dtype)  # type: ignore[operator]  # (a ModuleList)
                  for cell, (h, w) in zip(self.cells, sizes)]
        memory = None
        if self.uses_memory:
            h0, w0 = sizes[0]
            memory = zeros(batch, self.cells[0].memory_channels, h0, w0, device, dtype)  # type: ignore[arg-type]
        outputs = None
        if self.keeps_outputs:
            outputs = [zeros(batch, self.config.hidden_channels, h, w, device, dtype) for h, w in sizes]
        state = ForecastState(layers, memory, outputs)
        if not self.skip_zero_states:
            state = state.map(unmark_zero)
        if self._nhwc(torch.device(device)):
            state = state.map(lambda t: zero_like_source(t, t.contiguous(memory_format=torch.channels_last))
                              if t.dim() == 4 else t)
        return state

    # ---------------------------------------------------------------- one step
    def _step(self, frame: torch.Tensor, state: ForecastState, with_aux: bool = False,
              absorbed: dict[Any, Any] | None = None) -> tuple[torch.Tensor, ForecastState, torch.Tensor | None]:
        """One step of the stack; ``absorbed`` is the clip's dict of weights combined with the embedding."""
        levels, move = self.levels, self.schedule.move
        memory = state.memory
        outputs: list[torch.Tensor] = []
        layers: list[State] = []
        auxes: list[Any] = []
        layout = torch.channels_last if self._nhwc(frame.device) else torch.contiguous_format
        call_cell = run_compiled_cell if self.compile_cells else run_cell
        x: Any
        if self.absorb_embedding and self.cells[0].convolves_input_only:
            x = EmbeddedFrame(frame, self.embed.weight, self.embed.bias, layout, absorbed)
        else:
            x = self.embed(frame).contiguous(memory_format=layout)
        for i, cell in enumerate(self.cells):
            if i > 0:
                x = move(outputs[i - 1], levels[i - 1], levels[i])
                skip = self.skips[i]
                if skip is not None:
                    x = x + outputs[skip]
            lower = None
            if cell.uses_lower_previous and i > 0 and state.outputs is not None:
                lower = zero_like_source(state.outputs[i - 1], move(state.outputs[i - 1], levels[i - 1], levels[i]))
            result = call_cell(cell, x, state.layers[i], memory, lower)  # type: ignore[arg-type]  # (a ModuleList)
            outputs.append(result.output)
            layers.append(result.state)
            memory = result.memory
            if memory is not None:
                memory = move(memory, levels[i], levels[(i + 1) % len(levels)])
            if with_aux and self.aux_loss is not None and result.aux is not None:
                auxes.append(result.aux)
        aux_total = self.aux_loss.step_total(auxes) if auxes and self.aux_loss is not None else None
        forecast = self.head(outputs[-1])
        return forecast, ForecastState(layers, memory, outputs if self.keeps_outputs else None), aux_total

    def _run_step(self, frame: torch.Tensor, state: ForecastState, with_aux: bool = False,
                  absorbed: dict[Any, Any] | None = None) -> tuple[torch.Tensor, ForecastState, torch.Tensor | None]:
        """One step of a clip, with the options in force (fast path, gradient checkpointing).

        ``absorbed`` (a dict per clip) lets the steps share the weights combined with the embedding, so that
        gradients reach them along the same path with or without checkpointing; a compiled step or cell combines
        them within the step (the same graph at every step, and when a checkpointed step is recomputed).
        """
        step = self._step
        if self.fast_path in COMPILED_PATHS:  # one layout: no recompilation for a strided frame
            step, frame, absorbed = self._compiled_step(), frame.contiguous(), None
        elif self.compile_cells:
            absorbed = None
        if self.grad_checkpointing and torch.is_grad_enabled():
            self._check_no_recompute()
            return checkpoint(step, frame, state, with_aux, absorbed, use_reentrant=False)
        return step(frame, state, with_aux, absorbed)

    def _compiled_step(self) -> Any:
        """``torch.compile`` of this model's :meth:`_step`, made on first use.

        It is bound to this model: a copy (``copy.deepcopy``, pickle) leaves it behind and compiles its own, or
        the copy would run the original's weights.
        """
        if self._fast_step is None:
            self._fast_step = torch.compile(self._step, dynamic=False,
                                            mode="reduce-overhead" if self.fast_path == "cudagraph" else None)
        return self._fast_step

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state["_fast_step"] = None
        return state

    def _check_no_recompute(self) -> None:
        if self.fast_path in GRAPH_PATHS:
            raise ValueError("Gradient checkpointing recomputes each step in the backward pass, which recorded "
                             "CUDA graphs cannot do; use fast path 'compile' with it, or turn one of them off.")

    def _recorded(self, frames: torch.Tensor) -> ClipGraphs | None:
        """The clip recordings to replay ``frames`` through, or ``None`` to run the clip eagerly."""
        if self._clip_graphs is None or not frames.is_cuda or frames.requires_grad:
            return None
        if self.grad_checkpointing and torch.is_grad_enabled():
            self._check_no_recompute()
        return self._clip_graphs

    def _begin_clip(self) -> None:
        """Tell recorded CUDA graphs that a new clip (a new training iteration) starts."""
        if self.fast_path == "cudagraph":
            torch.compiler.cudagraph_mark_step_begin()

    def step(self, frame: torch.Tensor, state: ForecastState | None = None) -> tuple[torch.Tensor, ForecastState]:
        """Feed one frame ``(B, C, H, W)``; get the forecast of the next frame and the new state.

        This is the streaming API: call it with each new radar frame as it arrives, then with its own
        forecasts to look further ahead.
        """
        if state is None:
            self._check_one_frame(frame)
            self.check_frames(frame.unsqueeze(1), what="frame")
            state = self.init_state(frame.shape[0], frame.shape[-2], frame.shape[-1],
                                    device=frame.device, dtype=frame.dtype)
        else:
            self.check_step(frame, state)
        forecast, state, _ = self._run_step(frame, state)
        return forecast.contiguous(), state

    check_step_inputs: bool = True
    """Set to ``False`` (per model or on the class) to skip :meth:`check_step` on a hot path whose inputs are
    already known to be right, e.g. a compiled streaming loop feeding its own forecasts back."""

    def check_step(self, frame: torch.Tensor, state: ForecastState) -> None:
        """Raise ``ValueError`` if ``frame`` cannot continue ``state``: other device, batch, size or dtype, a state
        of another model, or NaN values (``TypeError`` if it is not a tensor).

        Cheap on purpose (it runs every step): metadata of the first layer's state, and one ``isfinite``
        reduction over the frame.
        """
        if not self.check_step_inputs:
            return
        self._check_one_frame(frame)
        weight = self.embed.weight
        if frame.device != weight.device:
            raise ValueError(f"frame is on {frame.device} but the model is on {weight.device}; move one of them "
                             "(frame.to(device) or model.to(device)).")
        if not isinstance(state, ForecastState) or not state.layers or not state.layers[0]:
            raise ValueError("state must be the ForecastState that init_state or a previous step returned.")
        self._check_state_fits(state)
        first = state.layers[0][0]
        if first.device != frame.device:
            raise ValueError(f"state is on {first.device} but the frame is on {frame.device}; "
                             "move the state with state.to(device).")
        if first.shape[0] != frame.shape[0]:
            raise ValueError(f"frame has batch size {frame.shape[0]} but the state was made for {first.shape[0]}; "
                             "start a new state (state=None) for a different batch.")
        if frame.shape[1] != self.config.in_channels:
            raise ValueError(f"frame has {frame.shape[1]} channels but this model was built for "
                             f"in_channels={self.config.in_channels}.")
        size = self.schedule.sizes(frame.shape[-2], frame.shape[-1])[0]
        if tuple(first.shape[-2:]) != tuple(size):
            raise ValueError(f"frame is {frame.shape[-2]}x{frame.shape[-1]} but the state was made for another "
                             "size; start a new state (state=None) for frames of another size.")
        if not frame.is_floating_point():
            raise ValueError(f"frame must be floating point in [0, 1], got dtype {frame.dtype}; divide uint8 by 255.")
        self._check_dtype(frame, "frame")
        if not torch.isfinite(frame).all():
            raise ValueError("frame contains NaN or Inf values; clean or mask it before forecasting.")

    def _check_state_fits(self, state: ForecastState) -> None:
        """A state of another model is refused by what the network itself lays out: its layers, the zigzag memory,
        the layers' outputs and the dtype. A cell reading the memory treats a missing one as zeros, so a ConvLSTM's
        state went on through a PredRNN without a word; another number of layers or a float64 state failed deep
        inside a cell. A state of ``torch.inference_mode`` is refused where gradients are recorded."""
        has = (len(state.layers), state.memory is not None, state.outputs is not None)
        needs = (len(self.cells), self.uses_memory, self.keeps_outputs)
        if has != needs:
            def parts(layers: int, memory: bool, outputs: bool) -> str:
                return (f"{layers} layers" + (", a zigzag memory" if memory else "")
                        + (", the layers' previous outputs" if outputs else ""))

            raise ValueError(f"state holds {parts(*has)}, but this model ({self.config.cell}) needs {parts(*needs)}: "
                             "it was made by another model. Continue a stream with the state this model's step "
                             "returned, or start a new one (state=None).")
        first, weight = state.layers[0][0], self.embed.weight
        if first.dtype != weight.dtype and not torch.is_autocast_enabled(weight.device.type):
            raise ValueError(f"state is {first.dtype} but the model's weights are {weight.dtype}; convert it with "
                             f"state.to({weight.dtype}), or start a new state (state=None).")
        if first.is_inference() and torch.is_grad_enabled():  # else "Inference tensors do not track version counter"
            raise ValueError("state was made under torch.inference_mode, and its tensors cannot take part in a step "
                             "that records gradients; continue under torch.inference_mode() or torch.no_grad(), or "
                             "copy it first (state = state.map(torch.clone)).")

    @staticmethod
    def _check_one_frame(frame: Any) -> None:
        """``step`` takes one frame: an array or a whole clip fails here saying so, not deep inside a cell."""
        if not isinstance(frame, torch.Tensor):
            raise TypeError(f"step takes one frame, a torch.Tensor of shape (B, C, H, W), got {type(frame).__name__}; "
                            "convert it with torch.as_tensor(frame).")
        if frame.dim() != 4:
            clip = " For a clip (B, T, C, H, W), forecast with model(frames, horizon=...)." if frame.dim() == 5 else ""
            raise ValueError(f"step takes one frame of shape (B, C, H, W), got shape {tuple(frame.shape)}.{clip}")

    # ---------------------------------------------------------------- whole clips
    def forward(self, frames: torch.Tensor, horizon: int = 1) -> torch.Tensor:
        """Forecast ``horizon`` frames after the context ``frames`` (B, T, C, H, W) -> (B, horizon, C, H, W)."""
        horizon = _horizon(horizon)
        self.check_frames(frames)
        graphs = self._recorded(frames)
        if graphs is not None:
            return graphs.run("forecast", lambda f: (self._forecast(f, horizon),), (frames,), self, key=horizon)[0]
        return self._forecast(frames, horizon)

    def _forecast(self, frames: torch.Tensor, horizon: int) -> torch.Tensor:
        b, t, _, h, w = frames.shape
        self._begin_clip()
        state = self.init_state(b, h, w, device=frames.device, dtype=frames.dtype)
        absorbed: dict[Any, Any] = {}
        with weight_casts_per_clip():
            for i in range(t):
                forecast, state, _ = self._run_step(frames[:, i], state, absorbed=absorbed)
            future = [forecast]
            for _ in range(horizon - 1):
                forecast, state, _ = self._run_step(forecast, state, absorbed=absorbed)
                future.append(forecast)
        return torch.stack(future, dim=1).contiguous()  # a copy only for channels-last frames of C > 1

    def forward_train(self, frames: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The training path: predict frames 1..T-1 of ``frames``, mixing truth and own forecasts.

        ``teacher`` has shape (B, T-1) with values in [0, 1]: at step ``t`` the input is
        ``teacher[:, t] * frames[:, t] + (1 - teacher[:, t]) * previous forecast`` (step 0 always sees the
        first frame). Scheduled sampling and its reverse are nothing but different ``teacher`` masks.
        Returns the predictions (B, T-1, C, H, W) and the auxiliary loss (a scalar, ``None`` if the cell
        has none), already averaged over steps and samples and scaled by its weight.
        """
        self._check_clip_form(frames, "frames")
        b, t = frames.shape[:2]
        if t < 2:
            raise ValueError(f"Training needs clips of at least 2 frames, got T={t}.")
        if not isinstance(teacher, torch.Tensor):
            raise TypeError(f"teacher mask must be a torch.Tensor of shape (B, T-1) = {(b, t - 1)} with values in "
                            f"[0, 1], got {type(teacher).__name__}; e.g. torch.ones({b}, {t - 1}) for teacher forcing.")
        if teacher.shape != (b, t - 1):
            raise ValueError(f"teacher mask must have shape (B, T-1) = {(b, t - 1)}, got {tuple(teacher.shape)}.")
        teacher = teacher.to(frames.device)  # the frames' device, as the recorded path has always moved it
        self._check_training_values(frames, teacher)
        graphs = self._recorded(frames)
        if graphs is not None and not teacher.requires_grad:
            outputs = graphs.run("train", self._train_clip_outputs, (frames, teacher), self)
            return outputs[0], (outputs[1] if len(outputs) > 1 else None)
        return self._train_clip(frames, teacher)

    def _train_clip_outputs(self, frames: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """:meth:`_train_clip` as a tuple of tensors only, as a recording needs."""
        prediction, aux_loss = self._train_clip(frames, teacher)
        return (prediction,) if aux_loss is None else (prediction, aux_loss)

    def _train_clip(self, frames: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, t, _, h, w = frames.shape
        teacher = teacher.to(frames.dtype)[:, :, None, None, None]
        self._begin_clip()
        state = self.init_state(b, h, w, device=frames.device, dtype=frames.dtype)
        predictions: list[torch.Tensor] = []
        aux_terms: list[torch.Tensor] = []
        x = frames[:, 0]
        absorbed: dict[Any, Any] = {}
        with weight_casts_per_clip():
            for i in range(t - 1):
                if i > 0:
                    x = teacher[:, i] * frames[:, i] + (1 - teacher[:, i]) * predictions[-1]
                forecast, state, aux = self._run_step(x, state, with_aux=True, absorbed=absorbed)
                predictions.append(forecast)
                if aux is not None:
                    aux_terms.append(aux)
        aux_loss = None
        if aux_terms and self.aux_loss is not None:
            aux_loss = torch.stack(aux_terms).mean() * self.aux_loss.weight
        return torch.stack(predictions, dim=1).contiguous(), aux_loss

    # ---------------------------------------------------------------- description
    def describe(self) -> dict[str, Any]:
        """What ``msrnn-zoo info`` shows: cell, schedule, data flow, parameter count."""
        return {
            "cell": self.config.cell,
            "cell_class": f"{self.cell_class.__module__}.{self.cell_class.__qualname__}",
            "schedule": self.schedule.describe(),
            "layers": self.config.num_layers,
            "scales": self.schedule.scales(),
            "skips": list(self.skips),
            "memory_flow": self.cell_class.memory_flow,
            "zigzag_memory": self.uses_memory,
            "reads_lower_previous": self.keeps_outputs,
            "auxiliary_loss": None if self.aux_loss is None else type(self.aux_loss).__name__,
            "sampling": self.cell_class.sampling,
            "parameters": sum(p.numel() for p in self.parameters()),
        }
