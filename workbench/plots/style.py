"""The house style every figure shares: the Okabe-Ito colours, a stable colour per model, small
consistent fonts, a light grid and no top/right spines, and the helpers that apply it.

The style is applied per figure; matplotlib's rcParams stay untouched so notebooks keep their own.
"""

from __future__ import annotations

import math
import re
import textwrap
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import AutoLocator, MaxNLocator
from matplotlib.transforms import ScaledTranslation

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies. Black is left
# out: it is the text colour and a black bar reads as emphasis. Blue and orange come first so the
# usual two-model comparison gets the most distinct pair; yellow is last because it is faint on white.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
INK = "#222222"  # text and error bars: softer than pure black, still high contrast
GRID = "#DDDDDD"
MUTED = "#555555"  # notes and secondary text
# The boxed warning a figure carries when its numbers mislead read alone (e.g. most mass outside the
# answer space): dark orange on pale orange, readable in greyscale too.
WARNING_INK = "#7A3300"
WARNING_FILL = "#FDEBD3"
WARNING_EDGE = "#D55E00"
SEQUENTIAL_CMAP = "cividis"  # perceptually uniform and readable with any colour-vision deficiency
FONT = {"title": 11.0, "label": 9.5, "tick": 8.5, "legend": 8.5, "note": 8.0, "annotation": 7.5}
DPI = 300  # exported PNGs: what journals ask of line art with text
SCREEN_DPI = 150  # figures as built and shown in a notebook: sharp, and not 2000 pixels wide
# Tick spacings a reader can count in: 0.2, 0.5, 1, 2, 5, ... (never 0.125 or 0.375).
ROUND_STEPS = (1, 2, 5, 10)

# Shorter names for metrics on axes and colour bars; anything else is shown with "_" as spaces.
METRIC_LABELS = {
    "entropy_bits": "answer entropy (bits)",
    "top_share": "probability of the top answer",
    "top1_mass": "share of the top answer",
    "p_other": "P(other): mass outside the answer space",
    "entropy_bits_in_space": "entropy within the answer space (bits)",
    "top_share_in_space": "top answer's share within the space",
    "distinct_answers": "distinct answers",
    "jsd": "Jensen-Shannon divergence (bits)",
    "kl_bits": "KL divergence (bits)",
}
_METRIC_ID = re.compile(r"\b(" + "|".join(sorted(map(re.escape, METRIC_LABELS), key=len, reverse=True)) + r")\b")


def model_colours(models: list[str]) -> dict[str, str]:
    """A colour per model, in order of first appearance (the same list always gives the same colours)."""
    unique = list(dict.fromkeys(models))
    # More models than colours cycle: past seven, colour alone cannot tell models apart anyway.
    return {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(unique)}


def style_axes(ax: Axes, grid: str | None = "both") -> None:
    """The house look for one axes: no top/right spines, grey frame, light grid behind the data."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#999999")
    ax.tick_params(labelsize=FONT["tick"], colors=INK, length=3, color="#999999")
    ax.xaxis.label.set_fontsize(FONT["label"])
    ax.yaxis.label.set_fontsize(FONT["label"])
    ax.xaxis.label.set_color(INK)
    ax.yaxis.label.set_color(INK)
    if grid:
        ax.grid(True, axis=grid, color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
    for axis in (ax.xaxis, ax.yaxis):
        if type(axis.get_major_locator()) is AutoLocator:  # numeric and not placed by hand: round steps
            axis.set_major_locator(MaxNLocator(nbins="auto", steps=list(ROUND_STEPS)))


def new_figure(width: float, height: float) -> Figure:
    """A white figure with constrained layout, so titles, legends and notes never overlap the plot."""
    return Figure(figsize=(width, height), dpi=SCREEN_DPI, layout="constrained", facecolor="white")


def font_scale(fig: Figure) -> float:
    """How much this figure's fonts were scaled to fit its width (1 as built; see `workbench.plots.sizing`)."""
    return float(getattr(fig, "_workbench_font_scale", 1.0))


def wrapped(artist: Text, text: str, per_inch: float, share: float = 1.0, floor: int = 12,
            ax: Axes | None = None) -> Text:
    """Set `text` on `artist` wrapped to its width, and remember how: laid out or resized, it is wrapped again.

    `per_inch`: characters per inch at the house font sizes; the width is the axes `ax` (a panel's title or
    axis label: once laid out, the panel's own width) or else `share` of the figure's width (the title: 1).
    `floor`: the fewest characters per line.
    """
    artist._workbench_wrap = (text, per_inch, share, floor, ax)  # type: ignore[attr-defined]
    _wrap_now(artist, artist.get_figure(root=True))
    return artist


def _wrap_now(artist: Text, fig: Figure) -> None:
    text, per_inch, share, floor, ax = artist._workbench_wrap  # type: ignore[attr-defined]
    inches = fig.get_figwidth() * (ax.get_position().width if ax is not None else share)
    artist.set_text(wrap(literal(text), max(floor, int(inches * per_inch / font_scale(fig)))))


def rewrap(fig: Figure, layout: bool = True) -> None:
    """Wrap every text `wrapped` remembered again, to the figure's width and its panels' widths as laid out
    (`layout=False`: as last laid out, without drawing, e.g. right after a resize so the layout can settle)."""
    if layout:
        fig.draw_without_rendering()
    for text in fig.findobj(Text):
        if getattr(text, "_workbench_wrap", None):
            _wrap_now(text, fig)


def on_resize(fig: Figure, hook: Any, *args: Any) -> None:
    """Run `hook(*args)` once the figure is laid out: when it is finished and again whenever it is resized
    (to spread labels, wrap a box to its panel); `hook` must be a module-level function, so figures copy."""
    fig._workbench_hooks = [*getattr(fig, "_workbench_hooks", []), (hook, args)]  # type: ignore[attr-defined]


def run_hooks(fig: Figure) -> None:
    """Run the figure's `on_resize` hooks (its layout settled first)."""
    for hook, args in getattr(fig, "_workbench_hooks", []):
        hook(*args)


def note_height(note: str, width: float) -> float:
    """Inches the wrapped note under a figure takes (finish_figure wraps it at ~13 characters per inch)."""
    return 0.2 * math.ceil(len(note) / (13.0 * width))


def finish_figure(fig: Figure, title: str, note: str, width: float) -> Figure:
    """Add the title on top (metric ids said in words) and the note in small italics under everything."""
    # About what fits on one line at these font sizes; `width` is the figure's width as built.
    if title:
        wrapped(fig.suptitle("", fontsize=FONT["title"] * font_scale(fig), color=INK), title_words(title), 10.4,
                floor=32)
    if note:
        # supxlabel, not fig.text: constrained layout reserves room for it, so it is never cut off.
        wrapped(fig.supxlabel("", fontsize=FONT["note"] * font_scale(fig), style="italic", color=MUTED), note, 13.0,
                floor=40)
    rewrap(fig)  # panel titles and labels to their panels as laid out
    run_hooks(fig)
    return fig


def panel_title(ax: Axes, text: str, share: float = 1.0) -> None:
    """A panel's own title (its view, its n), wrapped to the panel's width (`share` of the figure's until laid out)."""
    wrapped(ax.set_title("", fontsize=(FONT["label"]) * font_scale(ax.get_figure(root=True)), color=INK),
            text, 11.0, share, floor=16, ax=ax)


def drawn_labels(fig: Figure) -> set[str]:
    """The labels of every artist drawn in the figure's axes that a legend may name."""
    found: set[str] = set()
    for ax in fig.axes:
        found.update(ax.get_legend_handles_labels()[1])
    return found


def add_legend(ax: Axes, handles: list[Any], labels: list[str], width: float, header: bool = False) -> None:
    """A frameless legend just above the axes: outside them it can never hide data.

    Only entries whose label an artist drawn in the figure carries are shown: a legend never names
    what is not there. `header=True` puts it in the middle of a header axes (see `panel_figure`).
    """
    fig = ax.get_figure(root=True)
    drawn = drawn_labels(fig)
    pairs = [(h, label) for h, label in zip(handles, labels, strict=True) if label in drawn]
    ax._workbench_legend = (handles, labels, width / fig.get_figwidth(), header)  # type: ignore[attr-defined]
    if not pairs:
        return
    size = FONT["legend"] * font_scale(fig)
    fits = max(16, int((width * 72 - 40) / (size * 0.55)))  # characters on one line beside the handle
    handles, labels = [h for h, _ in pairs], [wrap(label, fits) for _, label in pairs]
    chars = [max(len(line) for line in label.split("\n")) for label in labels]

    def fits_in(ncols: int) -> bool:  # matplotlib fills column by column; each is as wide as its longest label
        # As matplotlib splits the entries: the first (len % ncols) columns hold one more (7 in 5: 2, 2, 1, 1, 1).
        rows, longer = divmod(len(labels), ncols)
        sizes = [rows + 1] * longer + [rows] * (ncols - longer)
        starts = np.cumsum([0, *sizes])
        return sum(max(chars[starts[c]:starts[c + 1]], default=0) * size * 0.55 + 36
                   for c in range(ncols)) <= width * 72

    per_row = next((c for c in range(len(labels), 1, -1) if fits_in(c)), 1)
    # An axes legend, not fig.legend(loc="outside ..."): constrained layout stacks an axes legend
    # under the suptitle, while an outside figure legend is drawn over it.
    where: dict[str, Any] = {"loc": "center"} if header else {"loc": "lower center", "bbox_to_anchor": (0.5, 1.01)}
    if not header and ax.get_title():  # above the panel's title, not on it
        lines = ax.get_title().count("\n") + 1
        lift = (ax.title.get_fontsize() * 1.25 * lines + 6) / 72  # inches
        where["bbox_transform"] = ax.transAxes + ScaledTranslation(0, lift, fig.dpi_scale_trans)
    ax.legend(handles, labels, ncols=per_row, frameon=False, fontsize=size, handlelength=1.6,
              columnspacing=1.4, borderaxespad=0.2, **where)


def mark_zero_bars(ax: Axes, positions: Any, values: Any, thickness: float, colour: str) -> None:
    """A zero-length bar is no bar: draw a stub at 0 the bar's thickness tall and the value "0" beside it."""
    for y, value in zip(np.asarray(positions, dtype=float), np.asarray(values, dtype=float), strict=True):
        if value == 0:
            ax.plot([0, 0], [y - thickness / 2, y + thickness / 2], color=colour, linewidth=2.4,
                    solid_capstyle="butt", clip_on=False, zorder=3)
            # On a white patch: a whisker from 0 passes under the "0", not through it.
            ax.annotate("0", (0, y), xytext=(4, 0), textcoords="offset points", va="center", ha="left",
                        fontsize=FONT["annotation"] * font_scale(ax.get_figure(root=True)), color=colour, zorder=4,
                        bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"})


def panel_figure(width: float, plot_height: float, ncols: int = 1, warning: str = "",
                 sharey: bool = False) -> tuple[Figure, list[Axes], Axes]:
    """A figure of `ncols` plot axes side by side, under a boxed warning when `warning` is not empty.

    Returns the figure, the plot axes and the axes the legend belongs on: the plot axes itself when
    there is one (`add_legend(..., header=False)`), else a header row spanning the plots
    (`header=True`), so one legend serves every panel. Header rows have no axis; constrained layout
    makes room for what they hold.
    """
    chars = max(40, int(width * 12))
    lines = wrap("\u26a0 " + warning, chars) if warning else ""
    heights = ([0.16 * (lines.count("\n") + 1)] if warning else []) + ([0.3] if ncols > 1 else []) + [plot_height]
    fig = new_figure(width, sum(heights) + 0.6)
    grid = fig.add_gridspec(len(heights), ncols, height_ratios=heights)
    axes: list[Axes] = []
    for j in range(ncols):  # the plots first: fig.axes[0] is the (first) plot
        axes.append(fig.add_subplot(grid[-1, j], sharey=axes[0] if sharey and axes else None))
    legend_ax = axes[0]
    if ncols > 1:
        legend_ax = fig.add_subplot(grid[-2, :])
        legend_ax.axis("off")
        fig._workbench_panels = axes  # type: ignore[attr-defined]  # one column stacks them (plots.sizing)
    if warning:
        box = fig.add_subplot(grid[0, :])
        box.axis("off")
        text = box.text(0.0, 0.5, "", transform=box.transAxes, ha="left", va="center",
                        fontsize=FONT["note"] + 0.5, color=WARNING_INK, linespacing=1.3,
                        bbox={"boxstyle": "round,pad=0.45", "facecolor": WARNING_FILL, "edgecolor": WARNING_EDGE,
                              "linewidth": 0.9})
        wrapped(text, "\u26a0 " + warning, 12.0, floor=30, ax=box)  # the box is as wide as the plots
    return fig, axes, legend_ax


def grouped_barh(ax: Axes, frame: pd.DataFrame, category: str, value: str, categories: list[str],
                 models: list[str], labels: dict[str, str] | None = None) -> None:
    """Horizontal bars of `value` per category, the models side by side, with ci_low/ci_high whiskers.

    Each model's bars carry its legend label (`labels`, default the model's name); a zero bar gets a stub and "0".
    """
    colours = model_colours(models)
    bar = 0.8 / len(models)
    for m, model in enumerate(models):
        rows = frame[frame["model"] == model].set_index(category).reindex(categories)
        y = np.arange(len(categories)) + (m - (len(models) - 1) / 2) * bar
        errors = np.vstack([(rows[value] - rows["ci_low"]).clip(lower=0).fillna(0),
                            (rows["ci_high"] - rows[value]).clip(lower=0).fillna(0)])
        ax.barh(y, rows[value], height=bar * 0.9, color=colours[model], xerr=errors,
                error_kw={"ecolor": INK, "elinewidth": 0.8, "capsize": 2},
                label=literal((labels or {}).get(model, model)))
        mark_zero_bars(ax, y, rows[value], bar * 0.9, colours[model])
    ax.set_yticks(np.arange(len(categories)), [literal(c) for c in categories], fontsize=FONT["tick"])
    ax.invert_yaxis()


# -- text -----------------------------------------------------------------------------------------


def literal(text: object) -> str:
    """Text shown as typed: a "$" in an answer ("$5") must not switch matplotlib to mathtext."""
    return str(text).replace("$", r"\$")


def shorten(text: object, width: int) -> str:
    """One line of at most `width` characters; long single words are cut too (textwrap.shorten drops them)."""
    flat = " ".join(str(text).split())
    if not flat:
        return '""'  # an empty answer is a real answer: show it, do not leave a blank tick
    if len(flat) > width:
        cut = flat[: width - 1]
        space = cut.rfind(" ")
        flat = (cut[:space] if space > width * 0.6 else cut).rstrip() + "…"
    return literal(flat)


def wrap(text: str, width: int) -> str:
    """Wrap each paragraph of `text` to `width` characters, at spaces only: an id ("mode-collapse/coin-flip")
    or a long word is never broken across lines."""
    return "\n".join(textwrap.fill(p, width, break_on_hyphens=False, break_long_words=False) if p else ""
                     for p in text.split("\n"))


def format_temperature(t: float) -> str:
    """1 -> "1.0", 0.7 -> "0.7": temperatures read as temperatures, not counts."""
    return f"{t:.1f}" if float(t).is_integer() else f"{t:g}"


def metric_label(metric: str) -> str:
    """A readable axis label for a metric column."""
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def metric_title(metric: str) -> str:
    """A metric in words for a title: 'top1_mass' -> 'Share of the top answer' (no units, capitalised)."""
    words = re.sub(r" \((bits|nats)\)$", "", metric_label(metric))
    return words[:1].upper() + words[1:]


def title_words(title: str) -> str:
    """A title with every metric id said in words: 'top1_mass against temperature' -> 'Share of the top answer
    against temperature' (capitalised only at the start)."""
    def say(match: re.Match[str]) -> str:
        words = metric_title(match.group(1))
        return words if match.start() == 0 else words[:1].lower() + words[1:]

    return _METRIC_ID.sub(say, title)


def prompt_words(ref: str) -> str:
    """A library prompt id in words for a title: 'mode-collapse/random-digit-sequence' -> 'random digit
    sequence (mode collapse)'; a grid variant 'c/p?theme=a lighthouse' -> 'p (c; theme = a lighthouse)'.
    Text that is not such an id is returned as it is."""
    match = re.fullmatch(r"([a-z0-9]+(?:-[a-z0-9]+)*)/([a-z0-9]+(?:-[a-z0-9]+)*)(?:\?(.*))?", str(ref).strip())
    if not match:
        return str(ref)
    collection, prompt = (part.replace("-", " ") for part in match.groups()[:2])
    pairs = [pair.partition("=") for pair in (match.group(3) or "").split("&") if pair]
    variables = [f"{key} = {value}" for key, _, value in pairs]
    return f"{prompt} ({'; '.join([collection, *variables])})"
