"""What a command imports before it does anything: each second of it is paid by every command and test worker."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("module", "why"), [
    ("torch._dynamo", "PrecipLSTM's attention marked functions for eager running at import (msrnn_zoo.eager)"),
    ("timm", "train's optimizer is timm's; timm imports torchvision, and evaluate and predict need neither"),
])
def test_the_commands_that_do_not_train_start_without(module, why):
    """Importing Dynamo costs about as much as importing torch, timm with torchvision twice that: ``msrnn-zoo list``,
    ``evaluate`` and ``predict`` must not pay them."""
    code = ("import sys, msrnn_zoo, msrnn_zoo.cli, msrnn_zoo.evaluate, msrnn_zoo.forecast, msrnn_zoo.card; "
            "names = msrnn_zoo.list_models(); assert 'preciplstm' in names, names; "
            f"print({module!r} in sys.modules)")
    result = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False", f"{module} is imported at start-up ({why})"
