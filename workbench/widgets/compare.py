"""ComparePanel: one prompt on two or more models, side by side.

The work is `workbench.analysis.comparisons.compare_prompt` (exact distributions where the backend can
score the answer space, sampled ones with Jeffreys intervals, pairwise divergences) plus
`workbench.analysis.metrics.semantic_clusters`; the panel only draws samples in chunks first, so a run
can be stopped and everything else comes from the store. The results show every distribution in its
total and in-space views, exact and sampled numbers each labelled, with a warning when most answers fall
outside the answer space (`workbench.plots.distributions`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.plots.distributions import (
    UNRELIABLE_MARK,
    VIEW_CAPTIONS,
    divergence_view,
    how_made,
    other_warning_text,
    summary_views,
    unreliable_notes,
)
from workbench.widgets.base import ALL, Panel, PromptPicker, chunks
from workbench.widgets.layout import (
    caption_html,
    details_html,
    heading_html,
    html_table,
    model_options,
    row,
    settings_section,
    warning_html,
)
from workbench.widgets.tokens import tokens_html

if TYPE_CHECKING:
    from workbench.analysis.comparisons import PromptComparison
    from workbench.analysis.metrics import Clusters
    from workbench.sampler import Sampler

AUTO_ANSWER = "auto"  # the prompt's answer space, else the first line


@dataclass
class CompareOutcome:
    """What a ComparePanel run produced."""

    report: "PromptComparison"
    samples: pd.DataFrame  # every model's samples with an `answer` column (and `cluster` when clustered)
    clusters: "Clusters | None"
    prompt_name: str
    answer_name: str
    drawn: dict[str, int]  # samples this run drew per model (the rest came from the store)


def default_models(sampler: "Sampler") -> list[str]:
    """The embedded base/tuned pair when registered, else the first two models of the registry."""
    pair = sampler.registry.pairs.get("embedded")
    if pair is not None:
        return [pair.base, pair.tuned]
    return list(sampler.registry.models)[:2]


class ComparePanel(Panel):
    """Pick a prompt and models, Run, and compare the continuation distributions side by side."""

    kind = "compare"

    def __init__(self, sampler: "Sampler | None" = None, prompt: str | None = "mode-collapse/random-digit-sequence",
                 models: list[str] | None = None, n: int = 32, temperature: float = 1.0, top_p: float = 1.0,
                 max_tokens: int | None = None, seed: int = 0, chat: bool | None = None, clusters: bool = True) -> None:
        super().__init__(sampler)
        chosen = models or default_models(self.sampler)
        names = model_options(self.sampler.registry, chosen)
        self.picker = PromptPicker(self.sampler, prompt, chat, on_error=self.callback_failed)
        self.models = w.SelectMultiple(options=names, value=tuple(chosen), rows=min(5, max(2, len(names))),
                                       description="models", layout=w.Layout(width="390px"),
                                       style={"description_width": "70px"})
        self.models.observe(self.guarded(self._models_changed), "value")
        self._models_changed()
        style = {"description_width": "90px"}
        self.n = w.BoundedIntText(value=n, min=1, max=100_000, description="n", style=style,
                                  layout=w.Layout(width="180px"))
        self.temperature = w.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05, description="temperature",
                                         style=style, readout_format=".2f", layout=w.Layout(width="330px"))
        self.top_p = w.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05, description="top-p", style=style,
                                   readout_format=".2f", layout=w.Layout(width="330px"))
        self.max_tokens = w.BoundedIntText(value=max_tokens or 16, min=1, max=32768, description="max tokens",
                                           style=style, layout=w.Layout(width="180px"))
        self.seed = w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed", style=style,
                                     layout=w.Layout(width="180px"))
        from workbench.prompts import ANSWER_EXTRACTORS

        self.answer = w.Dropdown(options=[AUTO_ANSWER, *ANSWER_EXTRACTORS], value=AUTO_ANSWER, description="answer",
                                 style=style, layout=w.Layout(width="240px"))
        self.cluster = w.Checkbox(value=clusters, description="semantic clusters (MiniLM)", indent=False)
        self._explicit_max_tokens = max_tokens is not None
        self.picker.ref.observe(self.guarded(self._suggest), "value")
        self.picker.source.observe(self.guarded(self._suggest), "value")
        self._suggest()

        # Results: figure, tables, and the sample browser.
        self.summary_html = w.HTML()
        self.divergence_html = w.HTML()
        self.note = w.HTML()
        narrow = {"description_width": "50px"}
        self.browse_model = w.Dropdown(options=[ALL], description="model", layout=w.Layout(width="250px"), style=narrow)
        self.browse_answer = w.Dropdown(options=[ALL], description="answer", layout=w.Layout(width="200px"),
                                        style=narrow)
        self.browse_cluster = w.Dropdown(options=[ALL], description="cluster", layout=w.Layout(width="340px"),
                                         style=narrow)
        self.sample_list = w.Select(options=[], rows=8, layout=w.Layout(width="auto"))  # the panel's width
        self.tokens = w.HTML()
        for control in (self.browse_model, self.browse_answer, self.browse_cluster):
            control.observe(self.guarded(self._refresh_samples), "value")
        self.sample_list.observe(self.guarded(self._show_tokens), "value")
        self.samples = pd.DataFrame()

        self.settings = settings_section([
            self.picker,
            row([self.models, w.VBox([self.n, self.max_tokens, self.seed])]),
            row([self.temperature, self.top_p]),
            row([self.answer, self.cluster]),
        ])
        # Figure first, then the tables, then the sample browser: one column that fits the panel's width.
        self.browser = w.VBox([w.HTML(heading_html("Samples", "filter by model, answer or cluster; click one for "
                                                             "its tokens coloured by probability")),
                               row([self.browse_model, self.browse_answer, self.browse_cluster]), self.sample_list,
                               self.tokens])
        self.browser.add_class("workbench-samples")
        self.children = [self.settings, self.run_row(), self.message, self.figure_box, self.note, self.summary_html,
                         self.divergence_html, self.browser, self.export_row()]

    def _suggest(self, *_: Any) -> None:
        """A library prompt's suggested max_tokens fills the control (the value sent is always explicit)."""
        if self._explicit_max_tokens:
            return
        from workbench.config import SamplingConfig

        default = SamplingConfig.model_fields["max_tokens"].default
        self.max_tokens.value = int(self.picker.suggested().get("max_tokens", default))

    # -- the work ----------------------------------------------------------------------------

    def job(self) -> Callable[["Sampler"], CompareOutcome]:
        from workbench.prompts import answer_extractor

        choice = self.picker.value()
        models = list(self.models.value)
        if len(models) < 2:
            raise WorkbenchError("pick two or more models to compare (ctrl/cmd-click in the models list)")
        for m in models:
            self.sampler.registry.get(m)
        n, seed = int(self.n.value), int(self.seed.value)
        fields = {"temperature": float(self.temperature.value), "top_p": float(self.top_p.value),
                  "max_tokens": int(self.max_tokens.value)}
        answer_name = self.answer.value
        answer = None if answer_name == AUTO_ANSWER else answer_extractor(answer_name)
        cluster = bool(self.cluster.value)

        def work(sampler: "Sampler") -> CompareOutcome:
            from workbench.analysis.answers import answers_of
            from workbench.analysis.comparisons import compare_prompt

            total = n * len(models)
            drawn = {model: 0 for model in models}
            for i, model in enumerate(models):
                before = 0
                for upto in chunks(n):
                    self.check_stop()
                    self.report(i * n + before, total, f"sampling {model}: {before}/{n}")
                    drawn[model] += sampler.sample(model, choice.prompt, upto, seed=seed, chat=choice.chat,
                                                   **choice.choices(), **fields).drawn
                    before = upto
            self.check_stop()
            self.report(total, total, "comparing (exact distributions where possible, divergences)…")
            report = compare_prompt(sampler, models, choice.prompt, n, seed=seed, answer=answer, chat=choice.chat,
                                    **choice.choices(), **fields)
            space = getattr(getattr(choice.prompt, "spec", None), "answer_space", None)
            normaliser = answer or space
            samples = pd.concat([r.samples for r in report.runs], ignore_index=True)
            samples["answer"] = answers_of(list(samples["text"]), normaliser)
            clusters = None
            if cluster and len(samples) >= 2:
                self.check_stop()
                self.report(total, total, "clustering the continuations (MiniLM embeddings)…")
                from workbench.analysis.metrics import semantic_clusters

                clusters = semantic_clusters(samples, seed=seed)
                samples["cluster"] = clusters.points["cluster"].to_numpy()
            shown = answer_name if answer else (f"answer space ({space.normaliser})" if space else "first line")
            return CompareOutcome(report, samples, clusters, choice.name, shown, drawn)

        return work

    def show(self, outcome: CompareOutcome) -> None:
        from workbench.analysis.distributions import distribution_table
        from workbench.plots import answer_distribution_figure
        from workbench.plots.distributions import comparison_rows

        report = outcome.report
        table = distribution_table(report.distributions)
        fig = answer_distribution_figure(table, title=f"Answer distributions: {outcome.prompt_name}",
                                         note=report.family_note)
        views = comparison_rows(report)
        self.results = {"summary": report.summary, "views": views, "divergence": report.divergence,
                        "distributions": table, "samples": outcome.samples}
        if outcome.clusters is not None:
            self.results["clusters"] = outcome.clusters.clusters
        self.report_object = report
        self.provenance = {
            "panel": "ComparePanel", "prompt": outcome.prompt_name, "models": [r.model for r in report.runs],
            "runs": [{"run_id": r.run_id, "model": r.model, "config": r.config.model_dump(mode="json"), "seed": r.seed,
                      "n": r.n, "template": r.rendered.template} for r in report.runs],
            "methods": {d.model: d.method for d in report.distributions}, "answer": outcome.answer_name,
            "families": report.family_note,
        }
        self.set_figures({"distribution": fig})
        # The family note is drawn under the figure (and kept in the export): said once, not again here.
        self.note.value = (f"<div style='font-size:12px;color:#555;line-height:1.4'>answer = "
                           f"{html.escape(outcome.answer_name)}<br>{html.escape(figure_label(report))}</div>")
        self.summary_html.value = summary_html(views)
        divergence, made = divergence_view(report.divergence)
        self.divergence_html.value = (caption_html(f"Between models (on the sampled answers, n={report.runs[0].n} "
                                                   "each)") + html_table(divergence, 4)
                                      + details_html("how these were made", "; ".join(made)))
        self.samples = outcome.samples
        models = list(dict.fromkeys(outcome.samples["model"]))
        answers = outcome.samples["answer"].value_counts().index.tolist()
        self.browse_model.options = [ALL, *models]
        self.browse_answer.options = [ALL, *answers]
        if outcome.clusters is not None:
            labels = outcome.clusters.clusters
            # (label, value) pairs throughout: a bare string among pairs makes ipywidgets show every pair as
            # a raw tuple and hand the tuple back as the value.
            self.browse_cluster.options = [(ALL, ALL), *[(f"{c}: {_short(label, 40)} ({size})", int(c))
                                                         for c, label, size in
                                                         zip(labels["cluster"], labels["label"], labels["size"])]]
        else:
            self.browse_cluster.options = [ALL]
        self.browse_model.value = self.browse_answer.value = self.browse_cluster.value = ALL
        runs = ", ".join(f"{r.model}: {outcome.drawn.get(r.model, r.drawn)} drawn, "
                         f"{r.n - outcome.drawn.get(r.model, r.drawn)} from the store" for r in report.runs)
        config = report.runs[0].config
        ran = f"n={report.runs[0].n}, T={config.temperature:g}, top-p={config.top_p:g}, seed={report.runs[0].seed}"
        self.status.value = f"<span class='workbench-status'>done: {html.escape(ran)} ({html.escape(runs)})</span>"
        self._refresh_samples()

    def report_tables(self) -> dict[str, pd.DataFrame]:
        """The panel's own compact tables for the report: both views, the divergences and the samples' texts."""
        if "views" not in self.results:
            return {}
        tables = {f"Per model, {VIEW_CAPTIONS[name]}": table
                  for name, table in summary_views(self.results["views"]).items()}
        tables["Between models (on the sampled answers)"] = divergence_view(self.results["divergence"])[0]
        samples = self.results["samples"]
        tables["Samples"] = samples[[c for c in ("model", "sample_index", "answer", "text") if c in samples]]
        return tables

    def _models_changed(self, *_: Any) -> None:
        self.picker.follow_models([self.sampler.model(m).kind for m in self.models.value])

    # -- the sample browser ------------------------------------------------------------------

    def filtered_samples(self) -> pd.DataFrame:
        """The samples the browser's filters select."""
        frame = self.samples
        if frame.empty:
            return frame
        if self.browse_model.value != ALL:
            frame = frame[frame["model"] == self.browse_model.value]
        if self.browse_answer.value != ALL:
            frame = frame[frame["answer"] == self.browse_answer.value]
        if self.browse_cluster.value != ALL and "cluster" in frame:
            frame = frame[frame["cluster"] == self.browse_cluster.value]
        return frame

    def _refresh_samples(self, *_: Any) -> None:
        frame = self.filtered_samples()
        self.sample_list.options = [
            (f"{row.model} #{row.sample_index} [{_short(row.answer, 20)}] {_short(row.text, 90)}", i)
            for i, row in zip(frame.index, frame.itertuples())
        ]
        self.tokens.value = "" if len(frame) else "<i>no samples match these filters</i>"

    def _show_tokens(self, *_: Any) -> None:
        i = self.sample_list.value
        if i is None or i not in self.samples.index:
            return
        row = self.samples.loc[i]
        title = (f"{row['model']} sample #{row['sample_index']} (answer: {row['answer']}; "
                 f"finish: {row['finish_reason']})")
        self.tokens.value = tokens_html(row["tokens"], row["token_logprobs"], title)

    def select_sample(self, model: str, index: int) -> str:
        """Show one sample's tokens coloured by logprob (as clicking it does); returns the HTML."""
        match = self.samples[(self.samples["model"] == model) & (self.samples["sample_index"] == index)]
        if match.empty:
            raise WorkbenchError(f"no sample #{index} of {model} in the last run")
        self.browse_model.value = self.browse_answer.value = self.browse_cluster.value = ALL
        self.sample_list.value = int(match.index[0])
        return self.tokens.value


def figure_label(report: "PromptComparison") -> str:
    """What the figure shows, per model: exact (no sampling error) or sampled (n, which whiskers)."""
    parts = []
    for dist in report.distributions:
        if dist.method == "exact":
            parts.append(f"{dist.model}: exact (scored, no sampling error, no whiskers)")
        else:
            interval = dist.table["interval"].iloc[0] if "interval" in dist.table and len(dist.table) else "CI"
            parts.append(f"{dist.model}: sampled (n={dist.n}, whiskers: {interval} interval)")
    return "Figure: " + "; ".join(parts) + ". Tables below: the exact and the sampled numbers, each labelled."


def summary_html(rows: pd.DataFrame) -> str:
    """The two views of a comparison's summary rows as HTML: a warning box when P(other) is above the
    threshold, the total-view and in-space tables, how each number was made, and the † notes."""
    warning = other_warning_text(rows)
    parts = [warning_html(warning)] if warning else []
    views = summary_views(rows)
    for name, table in views.items():
        parts.append(caption_html(f"Per model, {VIEW_CAPTIONS[name]}") + html_table(table))
    if len(views) == 1:
        parts.append(caption_html("", ["No answer space: every answer counts, so the in-space view is the total "
                                       "view."]))
    parts.append(caption_html("", [
        f"method = exact (scored: no sampling error) or sampled (n samples); brackets: 95% interval; "
        f"{UNRELIABLE_MARK}: outside the regime where the interval was checked"]))
    parts.append(details_html("how each number was made (estimators, intervals, † notes)",
                              "\n".join([*how_made(rows), *unreliable_notes(rows)])))
    return "".join(parts)


def _short(text: Any, width: int) -> str:
    text = str(text).replace("\n", "⏎")
    return text if len(text) <= width else text[: width - 1] + "…"
