"""Names are first come, first served in a fixed order: built-ins cannot be replaced, the order of sys.path
(install order) changes nothing, and a clash is shown on both sides without removing anything."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from msrnn_zoo import cli, plugins, registry
from msrnn_zoo.cli import main

REPO = Path(__file__).resolve().parents[1]

CELL_MODULE = '''
import torch
from torch import nn

import msrnn_zoo
from msrnn_zoo.cell import CellOutput, RecurrentCell, zeros


class {cls}(RecurrentCell):
    def __init__(self, in_channels, hidden_channels, kernel_size=3, *, layer_index=0, num_layers=1):
        super().__init__(in_channels, hidden_channels, kernel_size, layer_index=layer_index, num_layers=num_layers)
        self.conv = nn.Conv2d(in_channels + hidden_channels, hidden_channels, kernel_size, padding=kernel_size // 2)

    def init_state(self, batch, height, width, *, device=None, dtype=None):
        return (zeros(batch, self.hidden_channels, height, width, device, dtype),)

    def forward(self, x, state, memory=None, lower_previous=None):
        h = torch.tanh(self.conv(torch.cat([x, state[0]], 1)))
        return CellOutput(h, (h,))


@msrnn_zoo.hookimpl
def register_cells(register):
    for name in {cells!r}:
        register(name, {cls}, description="from {dist}")
'''


def fake_distribution(site: Path, dist: str, entry_point: str, cells: list[str]) -> str:
    """An installed distribution (dist-info + module) in ``site``, the way pip would leave it."""
    module = dist.replace("-", "_") + "_plugin"
    (site / f"{module}.py").write_text(CELL_MODULE.format(cls="Cell" + module.title().replace("_", ""),
                                                          cells=cells, dist=dist))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\n{entry_point} = {module}\n")
    return module


def install(monkeypatch, tmp_path, specs, reverse=False):
    """Each spec in its own site directory; ``reverse`` flips their order on sys.path."""
    sites = []
    for i, (dist, ep, cells) in enumerate(specs):
        site = tmp_path / f"site{i}"
        site.mkdir()
        fake_distribution(site, dist, ep, cells)
        sites.append(site)
    for site in (sites if reverse else reversed(sites)):
        monkeypatch.syspath_prepend(str(site))


def by_key():
    return {r.key: r for r in plugins.records()}


@pytest.mark.parametrize("reverse", [False, True])
def test_a_builtin_cell_cannot_be_taken(fresh_zoo, monkeypatch, tmp_path, reverse):
    # "aaa-evil" sorts before every msrnn-* distribution, and its entry point has the built-in's name too.
    install(monkeypatch, tmp_path, [("aaa-evil", "convlstm", ["convlstm", "evilcell"])], reverse)
    reg = registry.registry()
    assert reg.cells["convlstm"].cell.__module__ == "msrnn_convlstm.cell"
    assert {"convlstm", "ms-convlstm", "evilcell", "ms-evilcell"} <= set(reg.models)
    records = by_key()
    builtin, evil = records["convlstm"], records["convlstm@aaa-evil"]
    assert builtin.distribution == "msrnn-convlstm" and builtin.builtin and builtin.ok
    assert builtin.cells == ["convlstm"] and evil.cells == ["evilcell"] and evil.ok
    assert "taken by msrnn-convlstm (built-in)" in evil.conflicts[0]
    assert "also claimed by aaa-evil" in builtin.conflicts[0]
    result = CliRunner().invoke(main, ["plugins", "--json"])
    shown = {(p["name"], p["distribution"]) for p in json.loads(result.output)}
    assert {("convlstm", "msrnn-convlstm"), ("convlstm", "aaa-evil")} <= shown
    monkeypatch.setattr(cli.console, "width", 250)
    table = CliRunner().invoke(main, ["plugins"]).output
    assert "failed" not in table and "aaa-evil" in table and "name conflict" in table


@pytest.mark.parametrize("reverse", [False, True])
def test_between_third_parties_the_order_is_by_distribution_name(fresh_zoo, monkeypatch, tmp_path, reverse):
    install(monkeypatch, tmp_path, [("zeta-cells", "shared", ["shared", "zeta"]),
                                    ("alpha-cells", "shared", ["shared", "alpha"])], reverse)
    reg = registry.registry()
    assert reg.cells["shared"].cell.__module__ == "alpha_cells_plugin"
    assert {"alpha", "zeta", "ms-alpha", "ms-zeta"} <= set(reg.models)
    records = by_key()
    assert records["shared"].distribution == "alpha-cells"
    assert records["shared@zeta-cells"].cells == ["zeta"]
    assert "taken by alpha-cells" in records["shared@zeta-cells"].conflicts[0]


@pytest.mark.parametrize("reverse", [False, True])
def test_a_cell_named_like_a_multiscale_model_is_refused(fresh_zoo, monkeypatch, tmp_path, reverse):
    """'ms-x' names the multi-scale model of cell 'x', whichever plugin comes first: a cell 'ms-x' would take it (or
    add a model 'ms-ms-x' and have none of its own named 'ms-x'), so it is refused, with the name to use instead."""
    install(monkeypatch, tmp_path, [("twin-maker", "twin", ["ms-convlstm"]), ("aaa-first", "first", ["ms-later"]),
                                    ("zzz-later", "later", ["later"])], reverse)
    reg = registry.registry()
    assert reg.models["ms-convlstm"].cell == "convlstm" and reg.models["ms-convlstm"].schedule == "mirror"
    assert reg.models["ms-later"].cell == "later" and reg.models["ms-later"].schedule == "mirror"
    assert not {"ms-convlstm", "ms-later"} & set(reg.cells)
    assert not [m for m in reg.models if m.startswith("ms-ms-")]
    records = by_key()
    assert "cell name 'ms-convlstm' starts with 'ms-'" in records["twin"].error
    assert "name the cell 'convlstm'" in records["twin"].error
    assert "name the cell 'later'" in records["first"].error
    assert records["later"].ok and records["later"].cells == ["later"]


def test_builtin_distributions_are_the_plugins_shipped_here():
    shipped = {re.search(r'^name = "([^"]+)"', p.read_text(), re.M).group(1)
               for p in (REPO / "plugins").glob("*/pyproject.toml")}
    assert set(plugins.BUILTIN_DISTRIBUTIONS) == shipped, textwrap.dedent(f"""
        msrnn_zoo.plugins.BUILTIN_DISTRIBUTIONS must list exactly the distributions under plugins/:
        add {sorted(shipped - set(plugins.BUILTIN_DISTRIBUTIONS))}, remove
        {sorted(set(plugins.BUILTIN_DISTRIBUTIONS) - shipped)}.""")


def test_loading_entry_points_again_adds_nothing(fresh_zoo, monkeypatch, tmp_path):
    install(monkeypatch, tmp_path, [("aaa-evil", "convlstm", ["evilcell"])])
    before = sorted(r.key for r in plugins.records())
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    assert sorted(r.key for r in plugins.records()) == before
    assert all(r.ok for r in plugins.records())


def test_the_zoos_plugins_are_named_after_what_they_register():
    """`missing_builtin` tells a user with an unknown cell or dataset to install msrnn-NAME: true only while each
    plugin of the zoo registers the names its distribution is named after."""
    registry.registry()
    shipped = [r for r in plugins.records() if r.builtin]
    assert {plugins.normalize(r.distribution) for r in shipped} == set(plugins.BUILTIN_DISTRIBUTIONS)
    for record in shipped:
        assert record.cells + record.datasets, record
        for name in record.cells + record.datasets:
            assert plugins.normalize(f"msrnn-{name}") == plugins.normalize(record.distribution), (name, record)
