"""Paper sizes: a figure redrawn at a journal's column width (one column 3.5 in, two columns 7 in).

`sized_copy` returns a copy of a figure at the chosen width (the caller's figure, shown in a notebook
or a panel, stays as it was): fonts a little smaller on one column, the title, note, warning and
panel titles wrapped again to the new width, the legends re-flowed, and the height chosen so the
plot keeps a sensible shape. Figures whose rows hold text (bars, heatmap rows, tree leaves) keep
their plot height, so labels never crowd; the others keep their aspect within limits.
"""

from __future__ import annotations

import pickle
import sys

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FixedLocator

from workbench.errors import WorkbenchError
from workbench.plots.style import add_legend, rewrap, run_hooks, wrap

WIDTHS = {"one-column": 3.5, "two-column": 7.0}  # inches, the common journal column widths
DEFAULT_WIDTH = "two-column"
ONE_COLUMN_FONT_SCALE = 0.85  # 8.5 pt ticks -> 7.2 pt, 7.5 pt annotations -> 6.4 pt: readable in print
MIN_PLOT_HEIGHT = 1.7  # inches: below this a plot of points and lines is hard to read
MAX_FIGURE_HEIGHT = 9.0  # in: a journal page's text block; taller exports squeeze their rows to fit
MIN_ROW_SCALE = 0.6  # rows of text (bars, leaves) shrink at most to this share of their height as built
KEEP_HEIGHT = "height"  # figures whose rows hold text keep their plot height
KEEP_ASPECT = "aspect"  # the rest keep their plot's shape (between MIN_PLOT_HEIGHT and the height as built)


def figure_width(width: str | None) -> float | None:
    """Inches for a width name ("one-column", "two-column"); None keeps the figure's own size."""
    if width is None:
        return None
    if width not in WIDTHS:
        raise WorkbenchError(f"unknown figure width {width!r}; use one of {', '.join(WIDTHS)}")
    return WIDTHS[width]


def keep(fig: Figure, what: str) -> Figure:
    """Say how `fig` is resized: KEEP_HEIGHT (rows of text) or KEEP_ASPECT (the default)."""
    fig._workbench_fit = what  # type: ignore[attr-defined]
    return fig


def plot_axes(fig: Figure) -> Axes:
    """The figure's main plot: the largest visible axes that draws an axis (not a header or a colour bar)."""
    candidates = [ax for ax in fig.axes if ax.get_visible() and ax.axison] or fig.axes
    return max(candidates, key=lambda ax: ax.get_position().width * ax.get_position().height)


def _plot_size(fig: Figure, ax: Axes) -> tuple[float, float]:
    """The plot's size in inches, with the layout settled."""
    fig.draw_without_rendering()
    box = ax.get_position()
    return box.width * fig.get_figwidth(), box.height * fig.get_figheight()


def _scale_fonts(fig: Figure, scale: float) -> None:
    fig._workbench_font_scale = scale  # type: ignore[attr-defined]
    if scale == 1.0:
        return
    for text in fig.findobj(Text):
        text.set_fontsize(text.get_fontsize() * scale)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            ticks = axis.get_ticklabels()
            if ticks:  # ticks made later (new locations) take the axis' size, not the old labels'
                ax.tick_params(axis="x" if axis is ax.xaxis else "y", labelsize=ticks[0].get_fontsize())


def _relegend(fig: Figure, to_axes: bool = False) -> None:
    """Lay the legends out again for the new width: their share of the figure, or (`to_axes`, once laid out)
    no wider than their axes: a legend wider than its column would narrow every plot in it."""
    for ax in fig.axes:
        spec = getattr(ax, "_workbench_legend", None)
        if spec:
            handles, labels, share, header = spec
            if to_axes:
                share = min(share, ax.get_position().width)
            if ax.get_legend():
                ax.get_legend().remove()
            add_legend(ax, handles, labels, share * fig.get_figwidth(), header)
            ax._workbench_legend = spec  # type: ignore[attr-defined]  # the share as built, for the next resize


def stack(fig: Figure, panels: list[Axes]) -> None:
    """Put side-by-side panels one under another (for one column), keeping the rows above them."""
    for ax in list(fig.axes):
        if not ax.get_visible():  # an unused cell of a grid of panels: nothing to keep
            ax.remove()
    spec = panels[0].get_subplotspec()
    grid = spec.get_gridspec()
    above = list(grid.get_height_ratios() or [1.0] * grid.nrows)[: spec.rowspan.start]
    plot = (grid.get_height_ratios() or [1.0] * grid.nrows)[spec.rowspan.start]
    new = fig.add_gridspec(len(above) + len(panels), 1, height_ratios=[*above, *[plot] * len(panels)])
    for ax in fig.axes:
        old = ax.get_subplotspec()
        if ax in panels or old is None or old.get_gridspec() is not grid:
            continue
        ax.set_subplotspec(new[old.rowspan.start, 0])  # a warning box or legend row above the panels
    for i, ax in enumerate(panels):
        ax.set_subplotspec(new[len(above) + i, 0])
        ax.tick_params(axis="y", labelleft=True)  # shared y labels: each stacked panel shows its own
    for text in fig.findobj(Text):
        spec = getattr(text, "_workbench_wrap", None)
        if spec:  # "the in-space view (right)" is below now
            text._workbench_wrap = (spec[0].replace("(right)", "(below)"), *spec[1:])  # type: ignore[attr-defined]


def _wrap_ticks(fig: Figure, chars: int) -> None:
    """Category names on a y axis wrapped at spaces to `chars`: a long name would squeeze a narrow plot."""
    for ax in fig.axes:
        if not isinstance(ax.yaxis.get_major_locator(), FixedLocator):
            continue
        labels = [t.get_text() for t in ax.get_yticklabels()]
        if any(len(label) > chars for label in labels):
            ax.set_yticks(ax.get_yticks(), [wrap(label, chars) for label in labels])


def _copy(fig: Figure) -> Figure:
    """A deep copy of a figure (the caller's keeps its size and text); a pyplot figure's copy is not left open
    in pyplot, where a notebook would show it a second time."""
    copy: Figure = pickle.loads(pickle.dumps(fig))
    helpers = sys.modules.get("matplotlib._pylab_helpers")  # loaded only when pyplot is
    manager = copy.canvas.manager
    if helpers is not None and manager is not None and manager in helpers.Gcf.figs.values():
        helpers.Gcf.destroy(manager)
    return copy


def sized_copy(fig: Figure, width: str) -> Figure:
    """A copy of `fig` redrawn `width` wide ("one-column" or "two-column"), fonts, text and height fitted."""
    inches = figure_width(width)
    copy = _copy(fig)
    if inches is None:
        return copy
    if copy.get_layout_engine() is None:  # a figure made elsewhere (pyplot, a bare Figure): lay it out too
        copy.set_layout_engine("constrained")
    if not copy.axes:
        copy.set_size_inches(inches, copy.get_figheight() * inches / copy.get_figwidth())
        return copy
    ax = plot_axes(copy)
    old_w, old_h = _plot_size(copy, ax)
    panels = getattr(copy, "_workbench_panels", None)
    stacked = bool(panels) and inches < WIDTHS["two-column"]
    if stacked:  # side by side at 3.5 in, each panel would be 1.4 in wide
        stack(copy, panels)
    # A generous first height (layout needs room to settle); the loop below finds the one that fits.
    copy.set_size_inches(inches, max(copy.get_figheight(), 4.0) * (len(panels) if stacked else 1))
    _scale_fonts(copy, 1.0 if inches >= WIDTHS["two-column"] else ONE_COLUMN_FONT_SCALE)
    rewrap(copy, layout=False)  # texts as wide as the new figure first, so the layout below can settle
    _relegend(copy)
    _wrap_ticks(copy, 18 if inches < WIDTHS["two-column"] else 24)
    for _ in range(2):  # then legends and each panel's texts to the panels as laid out (they interact)
        rewrap(copy)
        _relegend(copy, to_axes=True)  # and over a panel's title, above as many lines as the title now has
    run_hooks(copy)  # labels placed for this width (again below, once the height is set)
    new_w, _ = _plot_size(copy, ax)
    if getattr(copy, "_workbench_fit", KEEP_ASPECT) == KEEP_HEIGHT:
        # Rows of text need the room their text needs: on two columns (fonts as built) their height as built;
        # on one column (smaller fonts) they shrink with the width, to MIN_ROW_SCALE at most, and a plot
        # already shorter than MIN_PLOT_HEIGHT (a few rows) is not shortened.
        one_column = inches < WIDTHS["two-column"]
        target = old_h * (min(1.0, max(new_w / old_w, MIN_ROW_SCALE)) if one_column else 1.0)
        target = max(target, min(old_h, MIN_PLOT_HEIGHT))
    else:  # a stacked panel keeps the shape the side-by-side pair had
        target = min(old_h, max(MIN_PLOT_HEIGHT, new_w * old_h / (old_w * (len(panels) if stacked else 1))))
    _fit_plot_height(copy, ax, inches, target)
    over = copy.get_figheight() - MAX_FIGURE_HEIGHT
    if over > 0:  # taller than a page's text block: the rows give up what is too much, down to MIN_PLOT_HEIGHT
        _, now = _plot_size(copy, ax)
        _fit_plot_height(copy, ax, inches, max(MIN_PLOT_HEIGHT, now - over / (len(panels) if stacked else 1)))
    run_hooks(copy)
    return copy


def _fit_plot_height(fig: Figure, ax: Axes, inches: float, target: float) -> None:
    """Set the figure's height so that the plot axes are `target` inches tall (margins settle in a few steps)."""
    for _ in range(4):  # the margins hardly change with the height: two or three steps settle it
        _, now = _plot_size(fig, ax)
        if abs(now - target) < 0.01:
            break
        fig.set_size_inches(inches, max(1.0, fig.get_figheight() + target - now))
