"""Test-session settings shared by the core's and every plugin's tests."""

import torch

# The suite runs many tiny convolutions: one intra-op thread is as fast as two on an idle 2-core machine and
# far faster on a busy one, where two threads per process fight other processes for the cores.
torch.set_num_threads(1)
