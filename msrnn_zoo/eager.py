"""Functions a compiled step runs as they are, not traced: :func:`never_compiled`.

``torch.compiler.disable`` used as a decorator imports Dynamo on the spot, and importing Dynamo costs about as much
as importing torch itself. A plugin applying it to a module-level function made every process that loaded the
registry -- ``msrnn-zoo list``, each command, each test worker -- pay that, although most never compile anything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def never_compiled(fn: F) -> F:
    """``torch.compiler.disable(fn)``, with Dynamo imported at the first call rather than at import.

    Traced inside a compiled step, the wrapper hands the call to the disabled function, so the graph breaks around
    ``fn`` exactly as with the decorator applied at once.
    """
    disabled: list[Callable[..., Any]] = []

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not disabled:
            import torch

            disabled.append(torch.compiler.disable(fn))
        return disabled[0](*args, **kwargs)

    return run  # type: ignore[return-value]
