"""SweepPanel: a temperature range for a prompt and a model pair, metrics against temperature.

The work is `workbench.analysis.sweeps.temperature_sweep` (exact where the backend scores the prompt's
answer space: one scoring pass gives every temperature) and the figure is
`workbench.plots.temperature_sweep_figure`, one per chosen metric. Sampled points are drawn in
chunks first so Stop works; the sweep then reads them from the store.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING

import ipywidgets as w
import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.widgets.base import Panel, PromptPicker, chunks, html_table
from workbench.widgets.compare import default_models

if TYPE_CHECKING:
    from workbench.sampler import Sampler

SWEEP_METRICS = ("entropy_bits", "top1_mass", "distinct_answers")


def temperature_grid(low: float, high: float, points: int) -> list[float]:
    """`points` evenly spaced temperatures from low to high, rounded to 3 decimals."""
    if points < 1:
        raise WorkbenchError(f"a sweep needs at least one temperature, got {points} points")
    if high < low or low < 0:
        raise WorkbenchError(f"the temperature range must run from 0 or more upwards, got {low}..{high}")
    grid = np.linspace(low, high, points) if points > 1 else np.array([low])
    return [round(float(t), 3) for t in dict.fromkeys(grid.tolist())]


class SweepPanel(Panel):
    """Metrics (entropy, top-1 mass, distinct answers) against temperature for a prompt and models."""

    kind = "sweep"

    def __init__(self, sampler: "Sampler | None" = None, prompt: str | None = "mode-collapse/random-digit",
                 models: list[str] | None = None, temperatures: tuple[float, float] = (0.5, 2.0), points: int = 4,
                 n: int = 32, seed: int = 0, method: str = "auto",
                 metrics: tuple[str, ...] = ("entropy_bits", "top1_mass")) -> None:
        super().__init__(sampler)
        names = list(self.sampler.registry.models)
        chosen = models or default_models(self.sampler)
        for m in chosen:
            self.sampler.registry.get(m)
        style = {"description_width": "90px"}
        self.picker = PromptPicker(self.sampler, prompt)
        self.models = w.SelectMultiple(options=names, value=tuple(chosen), rows=min(6, max(2, len(names))),
                                       description="models", layout=w.Layout(width="420px"))
        self.temperatures = w.FloatRangeSlider(value=list(temperatures), min=0.0, max=3.0, step=0.1,
                                               description="temperatures", style=style, readout_format=".1f")
        self.points = w.BoundedIntText(value=points, min=1, max=25, description="points", style=style,
                                       layout=w.Layout(width="180px"))
        self.n = w.BoundedIntText(value=n, min=1, max=100_000, description="n (sampled)", style=style,
                                  layout=w.Layout(width="180px"))
        self.seed = w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed", style=style,
                                     layout=w.Layout(width="180px"))
        self.method = w.Dropdown(options=["auto", "exact", "sampled"], value=method, description="method",
                                 style=style, layout=w.Layout(width="220px"))
        self.metrics = w.SelectMultiple(options=list(SWEEP_METRICS), value=tuple(metrics), rows=3,
                                        description="metrics", style=style)
        self.table_html = w.HTML()
        settings = w.VBox([self.picker, self.models, w.HBox([self.temperatures, self.points]),
                           w.HBox([self.n, self.seed, self.method]), self.metrics])
        self.children = [settings, self.run_row(), self.message, self.figure_box, self.table_html, self.export_row()]

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
                frames.append(temperature_sweep(sampler, [model], choice.prompt, temps, n=n, seed=seed, method=method,
                                                metrics=metrics, **choice.choices()))
                done = (models.index(model) + 1) * len(temps) * n
            frame = pd.concat(frames, ignore_index=True)
            frame.attrs.update(prompt=choice.name, metrics=metrics, n=n, seed=seed, temperatures=temps)
            return frame

        return work

    def show(self, frame: pd.DataFrame) -> None:
        from workbench.plots import temperature_sweep_figure

        name, metrics = frame.attrs["prompt"], frame.attrs["metrics"]
        models = list(dict.fromkeys(frame["model"]))
        note = self.sampler.registry.describe_pair(models) if len(models) > 1 else ""
        figures = {metric: temperature_sweep_figure(frame, metric, title=f"{metric} against temperature: {name}",
                                                    note=note)
                   for metric in metrics if (frame["metric"] == metric).any()}
        self.results = {"sweep": frame}
        self.provenance = {"panel": "SweepPanel", "prompt": name, "models": models,
                           "temperatures": frame.attrs["temperatures"], "n": frame.attrs["n"],
                           "seed": frame.attrs["seed"], "methods": sorted(set(frame["method"])), "families": note}
        self.set_figures(figures)
        self.table_html.value = html_table(frame, 3, max_rows=60)
        self.status.value = (f"<span class='workbench-status'>done: {len(frame)} rows "
                             f"({html.escape(', '.join(sorted(set(frame['method']))))})</span>")
