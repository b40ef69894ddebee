"""Whole clips recorded as CUDA graphs and replayed: the ``"clip-graph"`` fast path.

At the paper's sizes a stacked recurrent network is launch-bound on a modern GPU. One training clip of
6 layers x 19 steps queues thousands of small kernels, and the GPU waits for the CPU to queue them: on an
H200, ms-convlstm took 0.12 s per step at batch 4 and at batch 16 alike (issue 7). Recorded once, a clip
replays with one launch for the forward and one for the backward.

No compiler is involved. The warm-up is three eager runs and one recording, not the minutes that inductor
takes, and the numbers are those of the eager path, because the same kernels run in the same order.

A recording holds fixed buffers and the kernels chosen when it was made, so it is kept per key: the input
shapes, dtypes and device, the autocast dtype, the float32 matrix products' precision (``tf32``), grad mode,
training mode and what else the caller names (the horizon of a forecast). Replays read the
parameters where they live, so an optimizer's in-place updates are seen; moving the parameters (``to``, a
new memory layout) or changing which ones train throws every recording away.

What a user could trip over is either made safe or refused with a message:

- predictions and gradients handed out are copies: they survive the next replay, and gradients accumulate
  over several backward passes as they do eagerly;
- a clip's backward must run before the next training forward of the same shape, because both use the one
  set of recorded activations (checked);
- a gradient with respect to the frames themselves, and double backward, are not recorded; frames that
  require a gradient run eagerly.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

WARMUP_RUNS = 3
"""Eager runs before a recording, on a side stream: cuDNN's autotuner, lazy initialisation and compiled
kernels (PrecipLSTM's FlexAttention) must settle before anything is recorded."""

RECORDINGS_KEPT = 4
"""Recordings kept per model, the least recently used dropped first (each holds a clip's activations)."""

ClipFunction = Callable[..., Sequence[torch.Tensor]]


@contextlib.contextmanager
def _uncached_autocast(dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast as the caller has it, without its cache of cast weights.

    The cache would let a recording reuse bf16 copies of the weights made during the warm-up, so a replay
    would never see the optimizer's updates.
    """
    if dtype is None:
        yield
        return
    with torch.autocast("cuda", dtype=dtype, cache_enabled=False):
        yield


class _Recording:
    """One recorded clip: its input buffers, the forward graph and, for training, the backward graph."""

    def __init__(self, fn: ClipFunction, args: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
                 autocast_dtype: torch.dtype | None) -> None:
        self.params = tuple(params)
        self.generation = 0
        with _uncached_autocast(autocast_dtype):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_RUNS):
                    outputs = tuple(fn(*args))
                    if self.params:
                        torch.autograd.grad(outputs, self.params, [torch.ones_like(o) for o in outputs],
                                            allow_unused=True)
                del outputs
            torch.cuda.current_stream().wait_stream(side)
            self.inputs = tuple(a.detach().clone() for a in args)
            pool = torch.cuda.graph_pool_handle()
            self.forward_graph = torch.cuda.CUDAGraph()
            # thread_local: a data loader's worker thread may use CUDA (pinned memory) while this thread records
            with torch.cuda.graph(self.forward_graph, pool=pool, capture_error_mode="thread_local"):
                self.outputs = tuple(fn(*self.inputs))
            self.backward_graph: torch.cuda.CUDAGraph | None = None
            if self.params:
                self.grad_outputs = tuple(torch.empty_like(o) for o in self.outputs)
                self.backward_graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.backward_graph, pool=pool, capture_error_mode="thread_local"):
                    self.grads = torch.autograd.grad(self.outputs, self.params, self.grad_outputs, allow_unused=True)
            # The recorded graphs are all a replay needs. The autograd graph behind the outputs would keep the
            # parameters' gradient accumulators made on the recording's streams alive, and every replayed
            # backward would then hand its gradients across streams (PyTorch warns of that mismatch). Dropped,
            # the next training step makes them on its own stream. The buffers themselves stay in the pool.
            self.outputs = tuple(o.detach() for o in self.outputs)

    def replay(self, args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Run the forward graph on ``args``; copies of its outputs."""
        for buffer, arg in zip(self.inputs, args):
            buffer.copy_(arg)
        self.forward_graph.replay()
        self.generation += 1
        return tuple(o.detach().clone() for o in self.outputs)


class _Replay(torch.autograd.Function):
    """The recorded forward and backward graphs as one differentiable function of the parameters."""

    @staticmethod
    def forward(ctx: Any, recording: _Recording, num_args: int,
                *args_and_params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.recording = recording
        outputs = recording.replay(args_and_params[:num_args])
        ctx.generation, ctx.num_args = recording.generation, num_args
        return outputs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        recording: _Recording = ctx.recording
        if recording.generation != ctx.generation:
            raise RuntimeError(
                "With the 'clip-graph' fast path, a clip's backward must run before the next training forward of the "
                "same shape: both use one recorded set of activations. Call loss.backward() after each "
                "forward_train, or use fast path 'compile' or none for this pattern.")
        assert recording.backward_graph is not None
        for buffer, grad in zip(recording.grad_outputs, grads):
            buffer.copy_(grad)
        recording.backward_graph.replay()
        param_grads = tuple(None if g is None else g.clone() for g in recording.grads)
        return (None, None) + (None,) * ctx.num_args + param_grads


class ClipGraphs:
    """The recordings of one model, by key; what :meth:`run` replays.

    Not copied with the model (``copy.deepcopy``, pickling): a copy has other parameter storage and records
    its own.
    """

    def __init__(self, keep: int = RECORDINGS_KEPT) -> None:
        self.keep = keep
        self._recordings: OrderedDict[Hashable, _Recording] = OrderedDict()
        self._parameters: tuple[tuple[int, bool], ...] = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> ClipGraphs:
        return ClipGraphs(self.keep)

    def __getstate__(self) -> dict[str, Any]:
        return {"keep": self.keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["keep"])  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self._recordings)

    def clear(self) -> None:
        """Drop every recording (and the GPU memory it holds)."""
        self._recordings.clear()

    def run(self, name: str, fn: ClipFunction, args: Sequence[torch.Tensor], module: nn.Module,
            key: Hashable = None) -> tuple[torch.Tensor, ...]:
        """``fn(*args)`` (a tuple of tensors) replayed from a recording, made on the first call of its key.

        Differentiable with respect to ``module``'s trainable parameters when grad mode is on; ``args`` must
        be CUDA tensors that need no gradient.
        """
        parameters = list(module.parameters())
        signature = tuple((p.data_ptr(), p.requires_grad) for p in parameters)
        if signature != self._parameters:
            self.clear()
            self._parameters = signature
        trainable = tuple(p for p in parameters if p.requires_grad) if torch.is_grad_enabled() else ()
        autocast_dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
        full_key = (name, key, bool(trainable), autocast_dtype, torch.get_float32_matmul_precision(), module.training,
                    tuple((tuple(a.shape), a.dtype, a.device) for a in args))
        recording = self._recordings.get(full_key)
        if recording is None:
            recording = _Recording(fn, args, trainable, autocast_dtype)
            self._recordings[full_key] = recording
            while len(self._recordings) > self.keep:
                self._recordings.popitem(last=False)
        else:
            self._recordings.move_to_end(full_key)
        if trainable:
            return _Replay.apply(recording, len(args), *args, *trainable)
        return recording.replay(args)
