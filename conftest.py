"""Test-session settings shared by the core's and every plugin's tests."""

import os

import torch

# The suite runs many tiny convolutions: one intra-op thread is as fast as two on an idle 2-core machine and
# far faster on a busy one, where two threads per process fight other processes for the cores.
torch.set_num_threads(1)

# The tests talk only to Hubs they start on 127.0.0.1; a developer's offline setting (huggingface_hub reads both,
# once, at import) would turn the tests of pushing and pulling into tests of the offline messages.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(_name, None)


def pytest_collection_modifyitems(items: list) -> None:
    """Start the cases marked slow first: the suite runs a process per core (pytest-xdist), and a minute-long case
    handed out last kept one process busy while the others had finished."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
