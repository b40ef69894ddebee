"""never_compiled: a compiled step runs the function as it is, and importing a plugin that uses it costs no Dynamo."""

import subprocess
import sys

import torch

from msrnn_zoo.cell import never_compiled


def test_a_compiled_caller_leaves_the_function_out_of_its_graphs():
    graphs = []

    def backend(gm: torch.fx.GraphModule, example_inputs):
        graphs.append({str(node.target) for node in gm.graph.nodes})
        return gm.forward

    @never_compiled
    def eager(x):
        return torch.sigmoid(x)

    def caller(x):
        return eager(torch.tanh(x)) * 2

    x = torch.randn(3)
    torch._dynamo.reset()
    assert torch.equal(torch.compile(caller, backend=backend)(x), caller(x))
    traced = set().union(*graphs)
    assert any("tanh" in target for target in traced)  # the caller was traced ...
    assert not any("sigmoid" in target for target in traced)  # ... and the function was not
    assert eager.__name__ == "eager"


def test_listing_the_zoo_imports_no_dynamo():
    """Importing Dynamo costs about as much as importing torch: ``msrnn-zoo list`` and every command that only
    loads the registry must not pay it (PrecipLSTM's attention marked functions for eager running at import)."""
    code = ("import sys, msrnn_zoo; names = msrnn_zoo.list_models(); assert 'preciplstm' in names, names; "
            "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo'))[:3])")
    result = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"imported at start-up: {result.stdout}"
