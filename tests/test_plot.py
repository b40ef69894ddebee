"""The per-frame metric chart of model cards (msrnn_zoo/plot.py)."""

from msrnn_zoo.plot import COLOURS, Panel, metric_chart


def test_the_legend_wraps_so_that_every_series_is_named_inside_the_chart():
    """The legend was one row: a one-panel chart, or a dataset with many baselines, drew the later names past the
    right edge, where nobody could read which curve was which."""
    names = [f"a long baseline name {i}" for i in range(len(COLOURS))]
    panel_height = 240
    image = metric_chart([Panel("MSE", {name: [1.0 + i, 2.0 + i] for i, name in enumerate(names)})],
                         panel_height=panel_height)
    legend = image.crop((0, 0, image.width, image.height - panel_height))
    colours = {colour for _, colour in legend.getcolors(maxcolors=1 << 16)}
    assert set(COLOURS) <= colours  # each series' line is drawn in the legend, the last one's too
    one = metric_chart([Panel("MSE", {"model": [1.0, 2.0]})], panel_height=panel_height)
    assert one.height < image.height  # a single name keeps a single row
