"""never_compiled: a compiled step runs the function as it is, with Dynamo imported only when it is called."""

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
