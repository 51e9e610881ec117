"""SweepPanel: a temperature range for a prompt and a model pair, metrics against temperature.

The work is `workbench.analysis.sweeps.temperature_sweep` (exact where the backend scores the prompt's
answer space: one scoring pass gives every temperature) and the figure is
`workbench.plots.temperature_sweep_figure`, one per chosen metric with its in-space partner beside it.
Sampled points are drawn in chunks first so Stop works; the sweep then reads them from the store. A
warning above the figures names the models and temperatures where most answers fall outside the
answer space, and the table says of every number whether it is exact or sampled (and n).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.plots.distributions import UNRELIABLE_MARK
from workbench.plots.style import metric_title
from workbench.widgets.base import Panel, PromptPicker, chunks
from workbench.widgets.compare import default_models
from workbench.widgets.layout import (
    caption_html,
    details_html,
    html_table,
    model_options,
    row,
    settings_section,
    warning_html,
)

if TYPE_CHECKING:
    from workbench.sampler import Sampler

# Total view first, then P(other) and the in-space view; a total-view metric's figure draws its in-space
# partner beside it (workbench.plots.sweeps.IN_SPACE_OF).
SWEEP_METRICS = ("entropy_bits", "top1_mass", "distinct_answers", "p_other", "entropy_bits_in_space",
                 "top_share_in_space")


def temperature_grid(low: float, high: float, points: int) -> list[float]:
    """`points` evenly spaced temperatures from low to high, rounded to 3 decimals."""
    if points < 1:
        raise WorkbenchError(f"a sweep needs at least one temperature, got {points} points")
    if high < low or low < 0:
        raise WorkbenchError(f"the temperature range must run from 0 or more upwards, got {low}..{high}")
    grid = np.linspace(low, high, points) if points > 1 else np.array([low])
    return [round(float(t), 3) for t in dict.fromkeys(grid.tolist())]


class SweepPanel(Panel):
    """Metrics (entropy, top-1 mass, distinct answers, P(other), in-space views) against temperature."""

    kind = "sweep"

    def __init__(self, sampler: "Sampler | None" = None, prompt: str | None = "mode-collapse/random-digit",
                 models: list[str] | None = None, temperatures: tuple[float, float] = (0.5, 2.0), points: int = 4,
                 n: int = 32, seed: int = 0, method: str = "auto",
                 metrics: tuple[str, ...] = ("entropy_bits", "top1_mass")) -> None:
        super().__init__(sampler)
        chosen = models or default_models(self.sampler)
        names = model_options(self.sampler.registry, chosen)
        style = {"description_width": "90px"}
        # A sweep takes a library prompt or a raw completion (exact scoring needs raw text): chat stays off.
        self.picker = PromptPicker(self.sampler, prompt, chat=False, on_error=self.callback_failed)
        self.models = w.SelectMultiple(options=names, value=tuple(chosen), rows=min(5, max(2, len(names))),
                                       description="models", layout=w.Layout(width="390px"),
                                       style={"description_width": "70px"})
        self.temperatures = w.FloatRangeSlider(value=list(temperatures), min=0.0, max=3.0, step=0.1,
                                               description="temperatures", style=style, readout_format=".1f",
                                               layout=w.Layout(width="380px"))
        self.points = w.BoundedIntText(value=points, min=1, max=25, description="points", style=style,
                                       layout=w.Layout(width="180px"))
        self.n = w.BoundedIntText(value=n, min=1, max=100_000, description="n (sampled)", style=style,
                                  layout=w.Layout(width="180px"))
        self.seed = w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed", style=style,
                                     layout=w.Layout(width="180px"))
        self.method = w.Dropdown(options=["auto", "exact", "sampled"], value=method, description="method",
                                 style=style, layout=w.Layout(width="220px"))
        self.metrics = w.SelectMultiple(options=list(SWEEP_METRICS), value=tuple(metrics), rows=3,
                                        description="metrics", style=style, layout=w.Layout(width="380px"))
        self.warning = w.HTML()  # the P(other) warning, above the table
        self.table_html = w.HTML()
        # One metric at a time: its figure (with its in-space partner beside it) and its table; every figure is
        # still in .figures and exported.
        self.shown = w.ToggleButtons(options=[], description="show", style={"button_width": "auto"},
                                     layout=w.Layout(display="none"))
        self.shown.observe(self.guarded(self._show_metric), "value")
        self._frame: pd.DataFrame | None = None
        self.settings = settings_section([self.picker, row([self.models, w.VBox([self.points, self.n, self.seed])]),
                                          row([self.temperatures, self.method]), self.metrics])
        # The figure carries its own warning box: the panel's (the same words) goes with the table's numbers.
        self.children = [self.settings, self.run_row(), self.message, self.shown, self.figure_box, self.warning,
                         self.table_html, self.export_row()]

    def job(self) -> Callable[["Sampler"], pd.DataFrame]:
        from workbench.analysis.distributions import can_be_exact
        from workbench.analysis.sweeps import temperature_sweep

        choice = self.picker.value()
        models = list(self.models.value)
        if not models:
            raise WorkbenchError("pick at least one model")
        metrics = tuple(self.metrics.value)
        if not metrics:
            raise WorkbenchError("pick at least one metric to plot")
        low, high = self.temperatures.value
        temps = temperature_grid(float(low), float(high), int(self.points.value))
        n, seed, method = int(self.n.value), int(self.seed.value), self.method.value
        suggested = self.picker.suggested()
        fields = {"max_tokens": int(suggested["max_tokens"])} if "max_tokens" in suggested else {}
        if choice.chat:
            raise WorkbenchError("the sweep panel takes a library prompt or a raw completion; untick chat")

        def work(sampler: "Sampler") -> pd.DataFrame:
            cells = [(m, t) for m in models for t in temps]
            total, done, frames = len(cells) * n, 0, []
            for model in models:
                exact = can_be_exact(sampler, model, choice.prompt) and method != "sampled"
                sampled = [t for t in temps if not exact or t == 0]
                for t in sampled:
                    before = 0
                    for upto in chunks(n):
                        self.check_stop()
                        self.report(done + before, total, f"sampling {model} at T={t:g}: {before}/{n}")
                        sampler.sample(model, choice.prompt, upto, seed=seed, temperature=t, **choice.choices(),
                                       **fields)
                        before = upto
                    done += n
                self.check_stop()
                self.report(done, total, f"{model}: {'exact distributions' if exact else 'metrics'}…")
                # Every metric, not only the chosen ones: the figures draw the in-space partners and P(other).
                frames.append(temperature_sweep(sampler, [model], choice.prompt, temps, n=n, seed=seed, method=method,
                                                **choice.choices()))
                done = (models.index(model) + 1) * len(temps) * n
            frame = pd.concat(frames, ignore_index=True)
            frame.attrs.update(prompt=choice.name, metrics=metrics, n=n, seed=seed, temperatures=temps)
            return frame

        return work

    def show(self, frame: pd.DataFrame) -> None:
        from workbench.plots import temperature_sweep_figure
        from workbench.plots.sweeps import IN_SPACE_OF, sweep_warning

        name, metrics = frame.attrs["prompt"], frame.attrs["metrics"]
        models = list(dict.fromkeys(frame["model"]))
        note = self.sampler.registry.describe_pair(models) if len(models) > 1 else ""
        partners = {IN_SPACE_OF[m] for m in metrics if m in IN_SPACE_OF and (frame["metric"] == IN_SPACE_OF[m]).any()}
        # An in-space metric chosen with its total-view partner is already drawn beside it.
        drawn = [m for m in metrics if m not in partners and (frame["metric"] == m).any()]
        figures = {metric: temperature_sweep_figure(
            frame, metric, title=f"{metric_title(metric)} against temperature: {name}", note=note) for metric in drawn}
        self.results = {"sweep": frame}
        methods = sorted(set(frame["method"]))
        self.provenance = {"panel": "SweepPanel", "prompt": name, "models": models,
                           "temperatures": frame.attrs["temperatures"], "n": frame.attrs["n"],
                           "seed": frame.attrs["seed"], "methods": methods, "families": note}
        self.set_figures(figures)
        warning = sweep_warning(frame, where="the in-space numbers (the right-hand panels)")
        self.warning.value = warning_html(warning) if warning else ""
        self._frame = frame
        current = self.shown.value
        self.shown.options = drawn  # the value is None now: setting it below shows that metric (_show_metric)
        self.shown.layout.display = "flex" if len(drawn) > 1 else "none"
        self.table_html.value = ""
        if drawn:
            self.shown.value = current if current in drawn else drawn[0]
        kinds = ", ".join("exact (no sampling error)" if m == "exact" else f"sampled (n={frame.attrs['n']})"
                          for m in methods)
        self.status.value = f"<span class='workbench-status'>done: {len(frame)} rows, {html.escape(kinds)}</span>"

    def reproduce_commands(self) -> list[str]:
        """The `workbench figure sweep` command of each metric drawn (same prompt, models, temperatures, n, seed)."""
        import shlex

        if not self.provenance:
            return []
        base = ["workbench", "figure", "sweep", str(self.provenance["prompt"]), "--models",
                ",".join(self.provenance["models"]), "--temperatures",
                ",".join(f"{t:g}" for t in self.provenance["temperatures"])]
        methods = self.provenance.get("methods", [])
        if "sampled" in methods:
            base += ["--n", str(self.provenance["n"]), "--seed", str(self.provenance["seed"])]
            if "exact" not in methods:
                base.append("--sampled")
        return [shlex.join([*base, "--metric", metric]) for metric in self.figures]

    def _show_metric(self, *_: Any) -> None:
        """The chosen metric's figure and its table: one row per model and temperature."""
        from workbench.plots.sweeps import IN_SPACE_OF, sweep_how_made, sweep_table

        frame, metric = self._frame, self.shown.value
        if frame is None or metric not in self.images:
            return
        self.figure_box.children = [self.images[metric]]
        shown = tuple(m for m in (metric, IN_SPACE_OF.get(metric))
                      if m and m != "p_other" and (frame["metric"] == m).any())
        made = sweep_how_made(frame, ("p_other", *shown))
        self.table_html.value = (
            caption_html(f"{metric_title(metric)} ({metric}) per model and temperature (top: the top answer, total "
                         "view)",
                         [f"method = exact (scored: no sampling error) or sampled (n={frame.attrs['n']} per point); "
                          f"brackets: 95% interval; {UNRELIABLE_MARK}: outside the regime where the interval was "
                          "checked"])
            + html_table(sweep_table(frame, shown), 3, max_rows=60)
            + details_html("how each number was made", "\n".join(made)))
