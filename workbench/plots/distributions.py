"""Answer distributions: each model's answer probabilities as grouped horizontal bars, in two views.

The table: model, answer, probability [ci_low, ci_high, count, method, temperature, n, interval,
kind]; NaN CIs (exact distributions) draw no whisker. When some model puts mass on "(other)"
(answers outside the answer space), the figure shows the total view (every answer, "(other)" as
one hatched bar) beside the in-space view (the shares among answers within the space), and a
boxed warning when P(other) is above the threshold: a base model that puts 99 % of its mass
outside the space otherwise shows one bar and nothing else.

`summary_views` turns the rows of `distribution_summary` (one per model and method) into the same
two views as text tables for the terminal and the panels, every number with its interval, and
`how_made` / `other_warning_text` / `unreliable_notes` say how each number was made and what to watch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from workbench.analysis.distributions import OTHER
from workbench.analysis.estimators import EXACT, NO_INTERVAL, share_bounds
from workbench.analysis.summaries import OTHER_WARNING_THRESHOLD, other_warning
from workbench.errors import WorkbenchError
from workbench.plots.checks import check_frame, no_duplicates, numeric_column, optional_column
from workbench.plots.sizing import KEEP_HEIGHT, keep
from workbench.plots.style import (
    FONT,
    INK,
    add_legend,
    finish_figure,
    font_scale,
    format_temperature,
    literal,
    mark_zero_bars,
    model_colours,
    panel_figure,
    panel_title,
    shorten,
    style_axes,
    wrapped,
)

if TYPE_CHECKING:
    from workbench.analysis.comparisons import PromptComparison

REST = "(rest)"  # the bar that folds every answer beyond `top`
OTHER_TICK = f"{OTHER}: outside the answer space"
OTHER_CELL = f"{OTHER} (outside the space)"  # a top answer that is "(other)" never appears bare
UNRELIABLE_MARK = "†"  # after a number outside the regime where its interval was checked
VIEWS = ("auto", "both", "total", "in_space")


def _distribution_legend(model: str, rows: pd.DataFrame) -> str:
    """'gemma-3-270m (exact, T=1.0, P(other)=0.99)' or 'smollm2 (sampled, n=200, T=1.0)': how the numbers were made."""
    name = model
    if "kind" in rows.columns and rows["kind"].notna().any():
        name += f", {rows['kind'].dropna().iloc[0]}"
    parts: list[str] = []
    methods = list(dict.fromkeys(rows["method"].dropna())) if "method" in rows.columns else []
    if methods:
        parts.append("/".join(str(m) for m in methods))
    if "sampled" in methods:
        n = optional_column(rows, "n").dropna()
        if len(n):
            parts.append(f"n={int(n.iloc[0])}")
        elif "count" in rows.columns:
            parts.append(f"n={int(optional_column(rows, 'count').sum())}")
    temps = optional_column(rows, "temperature").dropna().unique()
    if len(temps):
        parts.append("T=" + "/".join(format_temperature(t) for t in sorted(temps)))
    other = rows.loc[rows["answer"] == OTHER, "probability"]
    if len(other):
        parts.append(f"P(other)={float(other.sum()):.2g}")
    return f"{name} ({', '.join(parts)})" if parts else name


def _in_space(table: pd.DataFrame) -> pd.DataFrame:
    """Each model's shares among the answers inside the space, with Jeffreys intervals where counts exist."""
    inside = table[table["answer"] != OTHER].copy()
    mass = inside.groupby("model")["probability"].transform("sum")
    inside["probability"] = np.where(mass > 0, inside["probability"] / mass.where(mass > 0, 1.0), np.nan)
    counts = optional_column(inside, "count")
    n_in = counts.groupby(inside["model"]).transform("sum")
    sampled = counts.notna() & (n_in > 0) & inside["ci_low"].notna()
    low, high = np.full(len(inside), np.nan), np.full(len(inside), np.nan)
    if sampled.any():
        low[sampled.to_numpy()], high[sampled.to_numpy()] = share_bounds(counts[sampled].to_numpy(),
                                                                         n_in[sampled].to_numpy())
    return inside.assign(ci_low=low, ci_high=high)


def _panel_n(table: pd.DataFrame, view: str) -> str:
    """'n = 200 samples' (total view) or 'n in space = 160 (model a), 152 (model b)' (in-space view), with
    '; exact: no sampling' for exact models: what each panel's bars rest on."""
    counts = optional_column(table, "count")
    sampled = table["method"] == "sampled" if "method" in table else counts.notna()
    if view == "in_space":
        inside = table["answer"] != OTHER
        per_model = counts[sampled & inside].groupby(table.loc[sampled & inside, "model"]).sum()
        name = "n in space"
    else:
        n = optional_column(table, "n")
        per_model = n[sampled].groupby(table.loc[sampled, "model"]).first()
        missing = per_model.isna()
        if missing.any():  # no n column: the counts say it
            per_model[missing] = counts[sampled].groupby(table.loc[sampled, "model"]).sum()[missing]
        name = "n"
    parts = []
    per_model = per_model.dropna().astype(int)
    if per_model.nunique() == 1:
        parts.append(f"{name} = {per_model.iloc[0]} samples" + (" per model" if len(per_model) > 1 else ""))
    elif len(per_model):  # different n: say whose is whose
        parts.append(f"{name} = " + ", ".join(f"{v} ({model})" for model, v in per_model.items()))
    if "method" in table and (table["method"] == "exact").any():
        parts.append("exact: no sampling" if parts else "exact probabilities, no samples")
    return "; ".join(parts) or f"{name} not recorded"


def _figure_warning(table: pd.DataFrame, threshold: float, in_space_shown: bool) -> str:
    """One sentence naming every model whose P(other) is above the threshold ("" when none is)."""
    over = []
    for model, rows in table.groupby("model", sort=False):
        p_other = float(rows.loc[rows["answer"] == OTHER, "probability"].sum())
        if p_other > threshold:
            method = "/".join(dict.fromkeys(rows["method"].dropna())) if "method" in rows else ""
            over.append(f"{model}{f' ({method})' if method else ''} {p_other:.0%}")
    if not over:
        return ""
    where = "the in-space view (right)" if in_space_shown else "the in-space numbers"
    return (f"Most of the probability falls outside the answer space, on {OTHER}: {', '.join(over)}. The total view "
            f"then mostly shows {OTHER}; widen the answer space, or read {where}.")


def _whisker_name(table: pd.DataFrame) -> str:
    """'whiskers: Jeffreys 95% interval (exact: none, no sampling error)'."""
    exact = " (exact: none, no sampling error)" if "method" in table and (table["method"] == "exact").any() else ""
    if "interval" in table.columns:
        named = [str(i) for i in dict.fromkeys(table["interval"].dropna()) if str(i) not in (EXACT, NO_INTERVAL)]
        if named:
            return f"whiskers: {', '.join(named)} interval{exact}"
    return f"whiskers: confidence interval{exact}"


def answer_distribution_figure(table: pd.DataFrame, top: int = 12, title: str = "", note: str = "",
                               views: str = "auto",
                               other_warning_threshold: float = OTHER_WARNING_THRESHOLD) -> Figure:
    """Grouped horizontal bars of each model's answer probabilities, with CI whiskers and a "(rest)" bar.

    `views`: "total" (every answer, "(other)" as one hatched bar), "in_space" (shares among the
    answers within the space), "both" side by side, or "auto" (both when some model has mass on
    "(other)"). A model whose P(other) is above `other_warning_threshold` puts a boxed warning on top.
    """
    func, what = "answer_distribution_figure", "the table"
    optional = ("ci_low", "ci_high", "count", "method", "temperature", "n", "interval", "kind")
    check_frame(table, func, what, ("model", "answer", "probability"), optional,
                "pass one row per model and answer")
    if top < 1:
        raise WorkbenchError(f"{func}: top must be at least 1, not {top}")
    if views not in VIEWS:
        raise WorkbenchError(f"{func}: views must be one of {', '.join(VIEWS)}, not {views!r}")
    table = table.assign(answer=table["answer"].astype(str),
                         probability=numeric_column(table, "probability", func, what),
                         ci_low=optional_column(table, "ci_low"), ci_high=optional_column(table, "ci_high"))
    no_duplicates(table, ["model", "answer"], func, "filter to one temperature and method per model first")
    has_other = bool((table.loc[table["answer"] == OTHER, "probability"] > 0).any())
    if views == "in_space" and not (table["answer"] != OTHER).any():
        raise WorkbenchError(f"{func}: every answer is {OTHER}; there is no in-space view to draw")
    chosen = {"auto": ["total", "in_space"] if has_other else ["total"], "both": ["total", "in_space"],
              "total": ["total"], "in_space": ["in_space"]}[views]
    models = list(dict.fromkeys(table["model"]))
    colours = model_colours(models)

    # One answer order for every panel: mean total probability across models (not one model's order,
    # so neither model's favourites are hidden in "(rest)"); "(other)" keeps its place in it.
    probs = table.pivot(index="answer", columns="model", values="probability").reindex(columns=models).fillna(0.0)
    order = probs.mean(axis=1).sort_values(ascending=False, kind="stable").index
    if chosen == ["in_space"]:
        order = order[order != OTHER]
    shown, folded = list(order[:top]), list(order[top:])
    labels = [OTHER_TICK if a == OTHER else shorten(a, 34) for a in shown]
    labels += [f"{REST[:-1]}, {len(folded)} answers)"] if folded else []

    m, rows = len(models), len(labels)
    width = 7.0 if len(chosen) == 1 else 10.0
    warning = _figure_warning(table, other_warning_threshold, "in_space" in chosen)
    fig, axes, legend_ax = panel_figure(width, 1.0 + rows * (0.12 + 0.16 * m), len(chosen), warning, sharey=True)
    keep(fig, KEEP_HEIGHT)  # rows of answers: resized, the bars keep their height and the labels their room
    handles: list[Any] = []
    legend = [literal(_distribution_legend(model, table[table["model"] == model])) for model in models]
    for ax, view in zip(axes, chosen, strict=True):
        frame = table if view == "total" else _in_space(table)
        drawn = _draw_bars(ax, frame, models, colours, shown, folded, view, legend)
        handles = handles or drawn
        style_axes(ax, grid="x")
        ax.tick_params(axis="y", length=0)
        whiskers = bool(frame["ci_high"].notna().any())
        if view == "in_space":
            name = "share among answers in the space (in-space view)"
        elif OTHER in set(table["answer"]):
            name = f"probability, {OTHER} included" + (" (total view)" if len(chosen) > 1 else "")
        else:
            name = "probability"
        # Wrapped to the panel: side by side, two long labels would run into each other.
        wrapped(ax.xaxis.label, name + (f"\n{_whisker_name(table)}" if whiskers else ""), 11.0, 1 / len(chosen), ax=ax)
        views_name = ("total view" if view == "total" else "in-space view") if len(chosen) > 1 else ""
        panel_title(ax, "; ".join(p for p in (views_name, _panel_n(table, view)) if p), 1 / len(chosen))
    axes[0].set_yticks(np.arange(rows, dtype=float), labels)
    axes[0].set_ylim(rows - 0.5, -0.5)  # inverted: the most probable answer on top
    for ax in axes[1:]:
        ax.tick_params(axis="y", labelleft=False)
    add_legend(legend_ax, handles, legend, width, header=len(chosen) > 1)
    return finish_figure(fig, title, note, width)


def _draw_bars(ax: Axes, table: pd.DataFrame, models: list[str], colours: dict[str, str], shown: list[str],
               folded: list[str], view: str, legend: list[str]) -> list[Any]:
    """One view's bars (one per model and answer, labelled with the model's `legend` entry), whiskers where
    there are CIs, a stub and "0" for a zero bar, and the "(rest)" bar."""
    def grid(column: str) -> pd.DataFrame:
        return table.pivot(index="answer", columns="model", values=column).reindex(index=[*shown, *folded],
                                                                                   columns=models)

    probs = grid("probability").fillna(0.0)  # an answer a model never gave has probability 0
    lows, highs = grid("ci_low"), grid("ci_high")
    m, rows = len(models), len(shown) + (1 if folded else 0)
    y = np.arange(rows, dtype=float)
    bar = 0.8 / m
    handles = []
    for j, model in enumerate(models):
        offset = (j - (m - 1) / 2) * bar
        colour = colours[model]
        values = probs.loc[shown, model].to_numpy()
        handles.append(ax.barh(y[: len(shown)] + offset, values, height=bar * 0.9, color=colour, label=legend[j]))
        hidden = np.array([view == "in_space" and a == OTHER for a in shown])  # "not in this view" says it
        mark_zero_bars(ax, y[: len(shown)][~hidden] + offset, values[~hidden], bar * 0.9, colour)
        if OTHER in shown and view == "total":
            # "(other)" is not an answer: hatched, so it never reads as one model's favourite.
            i = shown.index(OTHER)
            ax.barh(y[i] + offset, values[i], height=bar * 0.9, color="white", hatch="xxx", edgecolor=colour,
                    linewidth=0.6)
        lo, hi = lows.loc[shown, model].to_numpy(), highs.loc[shown, model].to_numpy()
        has_ci = np.isfinite(lo) & np.isfinite(hi)  # exact distributions carry NaN: no whisker
        if has_ci.any():
            xerr = np.vstack([values - lo, hi - values])[:, has_ci].clip(min=0)
            ax.errorbar(values[has_ci], y[: len(shown)][has_ci] + offset, xerr=xerr, fmt="none",
                        ecolor=INK, elinewidth=0.8, capsize=2, capthick=0.8)
        if folded:
            # Hatched and paler: a sum over many answers, not one answer; no CI for a sum.
            ax.barh(y[-1] + offset, probs.loc[folded, model].sum(), height=bar * 0.9, color=colour, alpha=0.45,
                    hatch="///", edgecolor=colour, linewidth=0.6)
    if folded:
        ax.axhline(rows - 1.5, color="#BBBBBB", linewidth=0.6, linestyle=":")
    if view == "in_space" and OTHER in shown:
        ax.text(0.01, shown.index(OTHER), "not in this view", transform=ax.get_yaxis_transform(), va="center",
                fontsize=FONT["annotation"] * font_scale(ax.get_figure(root=True)), color="#777777", style="italic")
    rest = probs.loc[folded].sum().to_numpy() if folded else np.zeros(0)
    upper = np.nanmax(np.concatenate([probs.to_numpy().ravel(), highs.to_numpy().ravel(), rest, [0.0]]))
    ax.set_xlim(0, min(1.0, upper * 1.08) if upper > 0 else 1.0)
    return handles


# --------------------------------------------------------------------------------------------
# The same two views as text tables (terminal, panels)
# --------------------------------------------------------------------------------------------


def estimate_text(value: Any, low: Any = math.nan, high: Any = math.nan, reliable: Any = True,
                  digits: int = 2) -> str:
    """'0.97 [0.86, 1.00]' (an interval), '0.991' (exact: its interval is itself), '–' (no number);
    a trailing † marks a number outside the regime where its interval was checked."""
    try:
        value, low, high = float(value), float(low), float(high)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(value):
        return "–"
    if math.isnan(low) or math.isnan(high) or (low == high == value):
        text = f"{value:.{digits + 1}f}"
    else:
        text = f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    unreliable = reliable is not None and not pd.isna(reliable) and not bool(reliable)
    return text + (UNRELIABLE_MARK if unreliable else "")


def top_cell(answer: Any) -> str:
    """A top answer as a cell: "(other)" says that it is the mass outside the space."""
    return OTHER_CELL if str(answer) == OTHER else str(answer)


def comparison_rows(report: PromptComparison) -> pd.DataFrame:
    """Both views of every distribution of a comparison: its sampled summary rows plus, for each model
    with an exact distribution, that distribution's summary (method "exact"), per model exact first."""
    rows = report.summary.copy()
    extra = []
    for dist in report.distributions:
        if dist.method == "exact":
            first = rows[rows["model"] == dist.model].iloc[0]
            extra.append({**dist.summary(), "kind": first.get("kind"), "family": first.get("family")})
    if extra:
        rows = pd.concat([pd.DataFrame(extra), rows], ignore_index=True)
    order = {model: i for i, model in enumerate(dict.fromkeys(report.summary["model"]))}
    rows = rows.assign(_model=rows["model"].map(order), _method=(rows["method"] != "exact").astype(int))
    return rows.sort_values(["_model", "_method"], kind="stable").drop(columns=["_model", "_method"]) \
        .reset_index(drop=True)


def has_answer_space(rows: pd.DataFrame) -> bool:
    """Whether any row's distribution has an answer space (else P(other) is 0 by definition)."""
    if "p_other_interval" not in rows.columns:
        return "p_other" in rows.columns
    return bool((rows["p_other_interval"].astype(str) != NO_INTERVAL).any()
                | (pd.to_numeric(rows["p_other"], errors="coerce") > 0).any())


def _count(value: Any) -> str:
    try:
        return "–" if value is None or math.isnan(float(value)) else str(int(value))
    except (TypeError, ValueError):
        return "–"


def summary_views(rows: pd.DataFrame, digits: int = 2) -> dict[str, pd.DataFrame]:
    """Text tables of summary rows (`distribution_summary` / `summary_row`, one per model and method).

    Returns {"total view": ..., "in-space view": ...} (the second only when there is an answer
    space): model, [kind], method, n, then p_other, entropy_bits, top_answer, top_share,
    distinct_answers [distinct_continuations] in the total view and n_in_space,
    entropy_bits_in_space, top_answer_in_space, top_share_in_space in the in-space view. Each
    number is "value [low, high]" (exact: the value alone), † where it is outside its regime.
    """
    def estimate(row: pd.Series, name: str) -> str:
        return estimate_text(row.get(name), row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high"),
                             row.get(f"{name}_reliable", True), digits)

    keys = [c for c in ("model", "kind") if c in rows.columns]
    total, inside = [], []
    for _, row in rows.iterrows():
        key = {c: row[c] for c in keys}
        key["method"] = row.get("method", "")
        key["n"] = _count(row.get("n"))
        line = {**key, "p_other": estimate(row, "p_other"), "entropy_bits": estimate(row, "entropy_bits"),
                "top_answer": top_cell(row.get("top_answer", "")), "top_share": estimate(row, "top_share"),
                "distinct_answers": _count(row.get("distinct_answers"))}
        if "distinct_continuations" in rows.columns:
            line["distinct_continuations"] = _count(row.get("distinct_continuations"))
        total.append(line)
        inside.append({**key, "n_in_space": _count(row.get("n_in_space")),
                       "entropy_bits_in_space": estimate(row, "entropy_bits_in_space"),
                       "top_answer_in_space": str(row.get("top_answer_in_space", "")) or "–",
                       "top_share_in_space": estimate(row, "top_share_in_space")})
    views = {"total view": pd.DataFrame(total)}
    if has_answer_space(rows):
        views["in-space view"] = pd.DataFrame(inside)
    return views


VIEW_CAPTIONS = {
    "total view": f"total view: every answer, anything outside the answer space counted as one answer, {OTHER}",
    "in-space view": "in-space view: conditional on answering within the answer space",
}
_DESCRIBED = ("p_other", "entropy_bits", "top_share", "entropy_bits_in_space", "top_share_in_space")


def made_by(method: str, estimator: str, interval: str) -> str:
    """'sampled: Miller-Madow, score (...) 95% interval' or 'exact: plug-in (...), no sampling error'."""
    if interval == EXACT:
        return f"{method}: {estimator}, no sampling error"
    if interval in (NO_INTERVAL, "", "nan"):
        return f"{method}: {estimator}, no interval"
    return f"{method}: {estimator}, {interval} interval"


def how_made(rows: pd.DataFrame, columns: tuple[str, ...] = _DESCRIBED) -> list[str]:
    """'p_other, top_share: sampled: share (count / n), Jeffreys 95% interval; exact: ...' lines, one per
    group of columns made the same way (from the rows' `<column>_estimator` / `_interval`)."""
    groups: dict[str, list[str]] = {}
    for column in columns:
        if f"{column}_estimator" not in rows.columns:
            continue
        made = []
        for _, row in rows.iterrows():
            if pd.isna(pd.to_numeric(row.get(column), errors="coerce")):
                continue  # no number, nothing to describe
            text = made_by(str(row.get("method", "")), str(row[f"{column}_estimator"]),
                            str(row.get(f"{column}_interval", "")))
            if text not in made:
                made.append(text)
        groups.setdefault("; ".join(made), []).append(column)
    return [f"{', '.join(columns)} = {made}" for made, columns in groups.items()]


def _label(row: pd.Series) -> str:
    method = str(row.get("method", ""))
    n = _count(row.get("n"))
    return f"{row['model']} ({method}{f', n={n}' if method == 'sampled' and n != '–' else ''})"


def other_warning_text(rows: pd.DataFrame, threshold: float = OTHER_WARNING_THRESHOLD,
                       where: str = "the in-space numbers (entropy_bits_in_space, top_share_in_space)") -> str:
    """One warning naming every model (and method) whose P(other) is above the threshold, and what to do
    ("" when none is)."""
    over: dict[str, list[str]] = {}
    for _, row in rows.iterrows():
        p_other = float(row.get("p_other", math.nan))
        if other_warning(str(row["model"]), p_other, threshold):  # the analysis decides what counts as over
            method = str(row.get("method", ""))
            n = _count(row.get("n"))
            how = f"{method}, n={n}" if method == "sampled" and n != "–" else method
            over.setdefault(str(row["model"]), []).append(f"{p_other:.0%}" + (f" ({how})" if how else ""))
    if not over:
        return ""
    models = "; ".join(f"{model} {', '.join(parts)}" for model, parts in over.items())
    return (f"Most answers fall outside the answer space (P(other) > {threshold:g}): {models}. The total entropy "
            f"and top answer then mostly describe {OTHER}: widen the answer space, or read {where}.")


def unreliable_notes(rows: pd.DataFrame) -> list[str]:
    """'model (method, n): why' for every row with numbers outside their estimator's regime."""
    if "unreliable" not in rows.columns:
        return []
    return [f"{UNRELIABLE_MARK} {_label(row)}: {row['unreliable']}" for _, row in rows.iterrows()
            if isinstance(row["unreliable"], str) and row["unreliable"]]


def summary_text(rows: pd.DataFrame, threshold: float = OTHER_WARNING_THRESHOLD, notes: bool = True) -> str:
    """The two views of summary rows as plain text: the tables, how each number was made, the P(other)
    warnings and (with `notes`) why numbers marked † are outside their regime."""
    views = summary_views(rows)
    lines = []
    for name, table in views.items():
        lines += [VIEW_CAPTIONS[name] + ":", table.to_string(index=False)]
    if len(views) == 1:
        lines.append(f"(no answer space: every answer counts, so there is no {OTHER} and the in-space view is the "
                     f"total view)")
    lines.append(f"how each number was made (brackets: 95% interval; exact numbers have none; {UNRELIABLE_MARK}: "
                 f"outside the regime where the interval was checked):")
    lines += ["  " + line for line in how_made(rows)]
    warning = other_warning_text(rows, threshold)
    lines += [f"WARNING: {warning}"] if warning else []
    if notes:
        lines += unreliable_notes(rows)
    return "\n".join(lines)


def divergence_view(divergence: pd.DataFrame, digits: int = 3) -> tuple[pd.DataFrame, list[str]]:
    """`compare_runs` rows as text: pair, jsd 'value [low, high]' (†), kl_ab, kl_ba, p_value; and how they were made."""
    table = pd.DataFrame({
        "pair": divergence["pair"],
        "jsd": [estimate_text(r.get("jsd"), r.get("jsd_ci_low"), r.get("jsd_ci_high"), r.get("jsd_reliable", True),
                              digits) for _, r in divergence.iterrows()],
        "kl_ab": divergence["kl_ab"].map(lambda v: f"{v:.{digits}f}"),
        "kl_ba": divergence["kl_ba"].map(lambda v: f"{v:.{digits}f}"),
        "p_value": divergence["p_value"].map(lambda v: f"{v:.{digits}g}"),
    })
    made = []
    if "jsd_estimator" in divergence.columns:
        made.append("jsd (bits) = " + "; ".join(dict.fromkeys(
            made_by("sampled", str(r["jsd_estimator"]), str(r.get("jsd_interval", "")))
            for _, r in divergence.iterrows())))
    made += ["kl_ab, kl_ba (bits) = plug-in KL with add-1/2 smoothing, no interval",
             "p_value = permutation test of the plug-in JSD"]
    return table, made


def exact_line(dist: Any, top: int = 6) -> str:
    """'exact distribution of M (T=1; 0.9% in the answer space): (other) (outside the space): 0.991, 1: 0.006, …;
    within the space: 1: 0.640, …' for an exact AnswerDistribution."""
    table = dist.table
    total = ", ".join(f"{top_cell(a)}: {p:.3f}" for a, p in zip(table["answer"][:top], table["probability"][:top],
                                                                strict=False))
    inside = table[table["answer"] != OTHER]
    mass = float(inside["probability"].sum())
    line = f"exact distribution of {dist.model} (T={dist.temperature:g}; {mass:.1%} in the answer space): {total}"
    if mass > 0 and (table["answer"] == OTHER).any():
        given = ", ".join(f"{a}: {p / mass:.3f}" for a, p in zip(inside["answer"][:top], inside["probability"][:top],
                                                                 strict=False))
        line += f"; within the space: {given}"
    return line
