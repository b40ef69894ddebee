"""Type checks for configs read from JSON, so a hand-edited file fails with the field's name, not deep inside.

JSON has no integer/float distinction a user can see (``6.0``), quotes numbers by accident (``"8"``) and
writes ``null`` for "nothing": each of these would otherwise surface as a ``TypeError`` in a convolution's
constructor. :func:`check_fields` checks every field of a config dataclass against its annotation.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar, Union

E = TypeVar("E", bound=BaseException)

MAX_SEED = 2**64 - 1
"""The largest seed ``torch.manual_seed`` takes (a larger one was "Overflow when unpacking long long")."""


def _describe(value: Any) -> str:
    kind = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


def _matches(value: Any, annotation: Any) -> bool:
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if origin is dict or annotation is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if origin in (tuple, list) or annotation in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        args = typing.get_args(annotation)
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args))
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # an annotation this checker does not know: leave it to the constructor


def _expected(annotation: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in typing.get_args(annotation))
    if annotation in names:
        return names[annotation]
    if origin is dict or annotation is dict:
        return "an object"
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        if args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values ({', '.join(_expected(a) for a in args)})"
        return "a list"
    return getattr(annotation, "__name__", str(annotation))


def check_fields(cls: type, data: dict[str, Any], what: str) -> None:
    """Raise ``ValueError`` naming ``what`` and the field if a value in ``data`` does not fit ``cls``'s fields."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} must hold a JSON object, got {_describe(data)}.")
    hints = typing.get_type_hints(cls)
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise ValueError(f"{what} lacks the field(s) {', '.join(map(repr, missing))}.")
    for f in dataclasses.fields(cls):
        if f.name in data and not _matches(data[f.name], hints[f.name]):
            raise ValueError(f"{what}: field {f.name!r} must be {_expected(hints[f.name])}, "
                             f"got {_describe(data[f.name])}.")


def with_cli_message(exc: E, cli: str) -> E:
    """``exc``, whose message names Python arguments (``in_frames=``), carrying the same refusal in the command
    line's words as ``cli_message`` (``--in-frames``), which the CLI prints instead: a notebook's user was told to
    lower ``--in-frames``, which no function of theirs takes, and the command line must keep saying its flags."""
    exc.cli_message = cli  # type: ignore[attr-defined]
    return exc


def cli_text(exc: BaseException) -> str:
    """What the command line says of ``exc``: its words from ``with_cli_message`` where it has them."""
    return getattr(exc, "cli_message", None) or str(exc)


def parse_device(name: str, option: str = "--device", python: str | None = None) -> Any:
    """``torch.device(name)``, or a ``ValueError`` that says which devices exist here, in the words of ``option``:
    a command-line flag (``--device``) or a Python argument (``map_location``). Given ``python`` as well (the
    argument of a function that the CLI calls too), the error speaks its words and carries ``option``'s as
    ``cli_message``.

    ``cpu:0`` (any index: there is one CPU) is the CPU: PyTorch accepts it, but ``torch.load`` cannot map a
    checkpoint onto it, so a run trained with ``--device cpu:0`` could not be resumed."""
    if python is None:
        return _parse_device(name, option)
    try:
        return _parse_device(name, python)
    except ValueError as exc:
        try:
            _parse_device(name, option)
        except ValueError as cli:
            raise with_cli_message(exc, str(cli)) from exc.__cause__
        raise


def _parse_device(name: str, option: str) -> Any:
    import torch

    def given(value: str) -> str:
        return f"{option} {value}" if option.startswith("--") else f"{option}={value!r}"

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{given(name)} is not a device PyTorch knows; use {given('cpu')}, {given('cuda')} or "
                         f"{given('cuda:N')}.") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{given(name)} was asked for, but PyTorch sees no CUDA device here; use {given('cpu')}.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{given(name)}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0.")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{given(name)} was asked for, but this machine has no Apple GPU; use {given('cpu')}.")
    elif device.type != "cpu":
        raise ValueError(f"{given(name)}: msrnn-zoo runs on cpu, cuda[:N] or mps.")
    else:
        device = torch.device("cpu")
    return device
