"""``msrnn_zoo.cell`` is the one module a cell's author imports from, whichever module implements each name."""

import importlib

import msrnn_zoo.cell as cell

HOMES = {
    "JointConv2d": "joint_conv", "joint_conv2d": "joint_conv", "fold_joint_convs": "joint_conv",
    "weight_casts_per_clip": "joint_conv", "zeros": "zero_states", "zeros_like": "zero_states",
    "mark_zero": "zero_states", "unmark_zero": "zero_states", "is_known_zero": "zero_states",
    "zero_like_source": "zero_states", "EmbeddedFrame": "embedded_frame", "recomputable": "recompute",
    "recipes_off": "recompute", "autocast_off": "precision", "memory_format_of": "layout",
}


def test_every_name_a_cell_builds_with_is_exported_by_msrnn_zoo_cell_as_its_home_module_defines_it():
    for name, home in HOMES.items():
        assert name in cell.__all__
        assert getattr(cell, name) is getattr(importlib.import_module(f"msrnn_zoo.{home}"), name), name
    missing = [name for name in cell.__all__ if not hasattr(cell, name)]
    assert not missing, f"msrnn_zoo.cell.__all__ names what it lacks: {missing}"
