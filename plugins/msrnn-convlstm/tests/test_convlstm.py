from pathlib import Path

import pytest

import msrnn_zoo
from msrnn_zoo import testing

DATA = Path(__file__).parent / "data"


def test_registered():
    assert {"convlstm", "ms-convlstm"} <= set(msrnn_zoo.list_models())


@pytest.mark.parametrize("name", ["convlstm", "ms-convlstm"])
def test_parity_with_original(name):
    assert testing.parity_error(DATA / f"{name}.safetensors") < 1e-5


def test_conformance():
    testing.run_conformance("convlstm")


def test_odd_kernel_and_options_checked():
    with pytest.raises(ValueError, match="odd"):
        msrnn_zoo.create("convlstm", kernel_size=4)
    with pytest.raises(ValueError, match="no option 'bogus'"):
        msrnn_zoo.create("convlstm", bogus=1)


def test_a_training_step_keeps_no_concatenated_copy_of_gate_inputs():
    """The convolution over ``[X_t, H_{t-1}]`` keeps its parts, not a copy of them for every layer and step."""
    assert testing.concatenations_kept("convlstm") == 0


def test_compiles_whole():
    """With compiled cells (set_compile_cells) the cell is one fused graph, with the eager numbers."""
    testing.check_compiled_cells("convlstm")
