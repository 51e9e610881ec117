"""What every panel shares: Run/Stop, a progress bar, status and error lines, figure export, a
background worker thread with its own store connection, and `.results` for continuing in code.

A panel's work runs in a `threading.Thread` so the notebook stays responsive. The worker gets
its own `Sampler` (`sampler.with_store()`: its own SQLite connection, the same loaded models)
and checks a stop flag between chunks of samples, so Stop ends a run within one chunk and every
sample drawn so far stays in the store (the next Run continues from there). Figures are
matplotlib `Figure` objects (never pyplot) shown as PNG images, which a worker thread can
update safely.
"""

from __future__ import annotations

import html
import io
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.plots.export import slug
from workbench.widgets.layout import error_html, images_of, row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from workbench.prompts import LibraryPrompt
    from workbench.sampler import Sampler

CHUNK = 8  # samples per sampler call: Stop takes effect within one chunk; batches stay reasonably full
TYPED = "my prompt"
LIBRARY = "library"
ALL = "(all)"
PREVIEW_CHARS = 300  # the end of the filled prompt shown under the picker (the whole text is one click away)


class Stopped(Exception):
    """Raised in the worker when Stop was pressed; what was sampled stays stored."""


def figure_png(fig: "Figure") -> bytes:
    """PNG bytes of a Figure (its own canvas: no pyplot, safe in a worker thread)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, facecolor="white")
    return buffer.getvalue()


def chunks(n: int, size: int = CHUNK) -> list[int]:
    """The growing sample counts a run asks for: size, 2*size, ..., n (each call draws only the new ones)."""
    return list(range(size, n, size)) + [n]


@dataclass
class PromptChoice:
    """What the prompt picker says: a library prompt (with its choices) or typed text."""

    prompt: "LibraryPrompt | str"
    chat: bool
    perturbation: str | None
    framing: str | None

    @property
    def name(self) -> str:
        """The library address, or the typed text shortened."""
        ref = getattr(self.prompt, "ref", None)
        if ref:
            return ref
        text = str(self.prompt).replace("\n", " ")
        return text if len(text) <= 40 else text[:39] + "…"

    def choices(self) -> dict[str, Any]:
        """perturbation and framing, for Sampler and analysis calls."""
        return {"perturbation": self.perturbation, "framing": self.framing}


class PromptPicker(w.VBox):
    """A library prompt (collection, a text filter, perturbation, framing) or a prompt you type."""

    def __init__(self, sampler: "Sampler", prompt: str | None = None, chat: bool | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        super().__init__()
        self.library = sampler.library
        self._on_error = on_error
        collections = sorted({p.collection.name for p in self.library})
        self.source = w.ToggleButtons(options=[LIBRARY, TYPED], value=LIBRARY, style={"button_width": "auto"},
                                      tooltips=["a prompt from the library", "a prompt you type"])
        wide, narrow = {"description_width": "70px"}, {"description_width": "90px"}
        self.collection = w.Dropdown(options=[ALL, *collections], value=ALL, description="collection", style=wide,
                                     layout=w.Layout(width="250px"))
        self.filter = w.Text(placeholder="a word in the prompt, its id or description", description="filter",
                             continuous_update=True, style={"description_width": "40px"},
                             layout=w.Layout(width="300px"))
        self.ref = w.Dropdown(options=[], description="prompt", layout=w.Layout(width="370px"), style=wide)
        self.perturbation = w.Dropdown(options=[("(none)", None)], description="perturbation", style=narrow,
                                       layout=w.Layout(width="220px"))
        self.framing = w.Dropdown(options=[("(default)", None)], description="framing",
                                  style={"description_width": "55px"}, layout=w.Layout(width="190px"))
        self.text = w.Textarea(placeholder="Type a prompt: a completion for every model, or a user message with chat",
                               layout=w.Layout(width="100%", max_width="640px", height="64px"), description="text",
                               style=wide)
        self.chat = w.Checkbox(value=bool(chat), description="chat (tuned: chat template; base: transcript)",
                               indent=False)
        self.chat_note = w.HTML()
        # None: the chat box follows the chosen models (`follow_models`) until the user clicks it.
        self._chat_decided = chat is not None
        self._setting_chat = False
        self.chat.observe(self._chat_clicked, "value")
        self.preview = w.HTML(layout=w.Layout(max_width="100%"))
        self.collection.observe(self._guarded(self._refilter), "value")
        self.filter.observe(self._guarded(self._refilter), "value")
        self.ref.observe(self._guarded(self._choose), "value")
        self.perturbation.observe(self._guarded(self._show_filled), "value")
        self.framing.observe(self._guarded(self._show_filled), "value")
        self.source.observe(self._guarded(self._switch), "value")
        self._refilter()
        if prompt is not None:
            if prompt in self.library:
                self.collection.value = self.library.get(prompt).collection.name
                self.ref.value = prompt
            else:
                self.source.value = TYPED
                self.text.value = prompt
        self._switch()

    def _guarded(self, callback: Callable[..., None]) -> Callable[..., None]:
        """A control's callback whose error goes to the panel (not to JupyterLab's log console)."""
        return guarded(callback, self._on_error) if self._on_error is not None else callback

    def _refilter(self, *_: Any) -> None:
        collection = None if self.collection.value == ALL else self.collection.value
        found = self.library.filter(collection=collection, text=self.filter.value.strip() or None)
        refs = [p.ref for p in found]
        current = self.ref.value
        self.ref.options = refs
        if current in refs:
            self.ref.value = current
        elif refs:
            self.ref.value = refs[0]
        self._choose()

    def _choose(self, *_: Any) -> None:
        ref = self.ref.value
        spec = self.library.get(ref).spec if ref else None
        for control, first, names in ((self.perturbation, "(none)", spec.perturbations if spec else ()),
                                      (self.framing, "(default)", spec.framings if spec else ())):
            current = control.value
            control.options = [(first, None), *[(name, name) for name in names]]
            # New options leave no index (a blank box) in ipywidgets 8: keep the choice where it still exists.
            control.index = 1 + list(names).index(current) if current in names else 0
        if spec is None:
            self.preview.value = "<i>no prompt matches the filter</i>"
            return
        self._show_filled()

    def _show_filled(self, *_: Any) -> None:
        """The chosen prompt as the models will get it (variables, segue and framing filled in): its start, and
        the whole text one click away."""
        from workbench.prompts import fill

        if not self.ref.value:
            return
        prompt = self.library.get(self.ref.value)
        spec = prompt.spec
        filled = fill(prompt, None, self.perturbation.value, self.framing.value)
        body = filled.text if filled.text is not None else "\n".join(f"{m['role']}: {m['content']}"
                                                                      for m in filled.messages or ())
        space = f" · answer space: {len(spec.answer_space.values())} answers" if spec.answer_space else ""
        head = body if len(body) <= PREVIEW_CHARS else "…" + body[-PREVIEW_CHARS:]  # the end: where the segue is
        pre = "<pre style='font-size:11px;white-space:pre-wrap;word-break:normal;overflow-wrap:anywhere;margin:2px 0'>"
        self.preview.value = (f"<div style='font-size:12px;color:#444;line-height:1.4'>"
                              f"{html.escape(spec.description)}{space}</div>"
                              f"{pre}{html.escape(head)}</pre>"
                              f"<details style='font-size:11px'><summary>the whole prompt as filled "
                              f"({len(body):,} characters)</summary>{pre}{html.escape(body)}</pre></details>")

    def _switch(self, *_: Any) -> None:
        if self.source.value == LIBRARY:
            self.children = [row([self.source, self.collection, self.filter]),
                             row([self.ref, self.perturbation, self.framing]), self.preview]
        else:
            self.children = [self.source, self.text, row([self.chat, self.chat_note])]

    def follow_models(self, kinds: list[str | None]) -> None:
        """A typed prompt goes as chat when a tuned model is among the chosen ones (its chat template, not raw
        text), and says so; once the user or the caller set the box, it stays as set."""
        if self._chat_decided:
            return
        tuned = "tuned" in kinds
        self._setting_chat = True
        try:
            self.chat.value = tuned
        finally:
            self._setting_chat = False
        self.chat_note.value = ("<span style='font-size:11px;color:#555'>on because a tuned model is chosen: it gets "
                                "its chat template, a base model a transcript</span>" if tuned else
                                "<span style='font-size:11px;color:#555'>off: only base models, which continue the "
                                "text as written</span>")

    def _chat_clicked(self, *_: Any) -> None:
        if not self._setting_chat:
            self._chat_decided = True
            self.chat_note.value = ""

    def suggested(self) -> dict[str, Any]:
        """The chosen library prompt's suggested sampling fields (empty for typed text)."""
        if self.source.value == LIBRARY and self.ref.value:
            return dict(self.library.get(self.ref.value).spec.sampling)
        return {}

    def value(self) -> PromptChoice:
        """The current choice, checked: an error names what to change."""
        if self.source.value == TYPED:
            text = self.text.value
            if not text.strip():
                raise WorkbenchError("the prompt is empty: type a prompt, or pick one from the library")
            return PromptChoice(text, bool(self.chat.value), None, None)
        if not self.ref.value:
            raise WorkbenchError("no library prompt is selected; clear the filter or pick another collection")
        return PromptChoice(self.library.get(self.ref.value), False, self.perturbation.value, self.framing.value)


def guarded(callback: Callable[..., Any], on_error: Callable[[BaseException], None]) -> Callable[..., None]:
    """`callback` for an observe / on_click hook: an exception is handed to `on_error` instead of escaping
    (ipywidgets would print it only to JupyterLab's log console, where a researcher never looks)."""

    def call(*args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:  # noqa: BLE001 - shown in the panel by on_error
            on_error(exc)

    return call


class Panel(w.VBox):
    """The shared machinery of the workbench panels (see the module docstring)."""

    kind = "panel"
    run_label = "Run"

    def __init__(self, sampler: "Sampler | None" = None) -> None:
        super().__init__()
        if sampler is None:
            from workbench.sampler import Sampler

            sampler = Sampler(progress=False)
        self.sampler = sampler
        self.results: dict[str, pd.DataFrame] = {}
        self.figures: dict[str, Figure] = {}
        self.provenance: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.last_traceback = ""
        self.runs_finished = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.run_button = w.Button(description=self.run_label, button_style="primary", icon="play",
                                   tooltip="Run in the background (the notebook stays usable)")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True,
                                    tooltip="Stop after the current chunk; sampled results stay stored")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="220px"))
        self.status = w.HTML(value="<span class='workbench-status'>ready</span>")
        self.message = w.HTML()
        self.export_formats = w.SelectMultiple(options=["png", "svg", "pdf", "html"], value=("png", "svg", "html"),
                                               rows=4, description="formats", layout=w.Layout(width="160px"))
        self.export_button = w.Button(description="Export", icon="download", disabled=True,
                                      tooltip="the figure as PNG/SVG/PDF with provenance, and an HTML report (figure, "
                                              "tables, provenance, commands), in $WORKBENCH_HOME/exports/widgets")
        self.export_status = w.HTML()
        self.figure_box = w.VBox()
        self.images: dict[str, w.Image] = {}
        self.settings: w.Accordion | None = None  # a subclass's settings_section: folded when a run finishes
        self.run_button.on_click(self.guarded(lambda _: self.run()))
        self.stop_button.on_click(self.guarded(lambda _: self.stop()))
        self.export_button.on_click(self.guarded(lambda _: self._export_clicked()))
        self.add_class("workbench-panel")
        self.add_class(f"workbench-{self.kind}")

    def guarded(self, callback: Callable[..., Any]) -> Callable[..., None]:
        """A control's callback whose error shows as one line in this panel (and in .error)."""
        return guarded(callback, self.callback_failed)

    def callback_failed(self, exc: BaseException) -> None:
        """Show an error raised by a control's callback (a filter, a click) in the panel's message line."""
        self.error = exc
        self.last_traceback = "".join(traceback.format_exception(exc))
        text = str(exc) if isinstance(exc, WorkbenchError) else (
            f"{type(exc).__name__}: {exc} (the full traceback is in .last_traceback)")
        self.message.value = error_html(text)

    # -- the controls row and the export row, for subclasses' layouts ------------------------

    def run_row(self) -> w.HBox:
        """Run, Stop, the progress bar and the status line."""
        return row([self.run_button, self.stop_button, self.progress, self.status])

    def export_row(self) -> w.HBox:
        """The export button with its formats and the last export's paths."""
        return row([self.export_button, self.export_formats, self.export_status])

    # -- running -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def figure(self) -> "Figure | None":
        """The panel's (first) figure."""
        return next(iter(self.figures.values()), None)

    def job(self) -> Callable[["Sampler"], Any]:
        """Read the controls (in the caller's thread) and return the work to do with a worker's Sampler."""
        raise NotImplementedError

    def show(self, outcome: Any) -> None:
        """Put a finished job's outcome on screen and into .results / .figures / .provenance."""
        raise NotImplementedError

    def run(self, wait: bool = False, timeout: float | None = None) -> bool:
        """Start the work in a background thread; False (with a polite note) if a run is already going."""
        with self._lock:
            if self.running:
                self.status.value = ("<span class='workbench-status'>a run is already in progress: wait for it "
                                     "or press Stop</span>")
                return False
            self.message.value = ""
            self.error = None
            try:
                work = self.job()
            except Exception as exc:  # noqa: BLE001 - any bad input becomes a message in the panel
                self._fail(exc)
                return False
            self._stop.clear()
            self.progress.value, self.progress.max, self.progress.bar_style = 0, 1, ""
            self.run_button.disabled, self.stop_button.disabled = True, False
            self.status.value = "<span class='workbench-status'>starting…</span>"
            self._thread = threading.Thread(target=self._work, args=(work,), name=f"workbench-{self.kind}",
                                            daemon=True)
            self._thread.start()
        if wait:
            self.wait(timeout)
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run (if any) has finished."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def stop(self) -> None:
        """Ask the run to stop after the current chunk (samples drawn so far stay stored)."""
        if self.running:
            self._stop.set()
            self.status.value = "<span class='workbench-status'>stopping after the current chunk…</span>"

    def check_stop(self) -> None:
        """Called by a job between chunks: raises Stopped when Stop was pressed."""
        if self._stop.is_set():
            raise Stopped()

    def report(self, done: int, total: int, what: str) -> None:
        """Progress from a job."""
        self.progress.max = max(1, total)
        self.progress.value = min(done, self.progress.max)
        self.status.value = f"<span class='workbench-status'>{html.escape(what)}</span>"

    def _work(self, work: Callable[["Sampler"], Any]) -> None:
        sampler = self.sampler.with_store()  # this thread's own store connection, the same models
        try:
            outcome = work(sampler)
            self.show(outcome)
            if self.settings is not None:
                self.settings.selected_index = None  # the results first; one click on "settings" re-opens them
            self.runs_finished += 1
            self.progress.value = self.progress.max
            self.progress.bar_style = "success"
        except Stopped:
            self.progress.bar_style = "warning"
            self.status.value = ("<span class='workbench-status'>stopped: the samples drawn so far are stored; "
                                 "Run again to continue from there</span>")
        except Exception as exc:  # noqa: BLE001 - shown in the panel, kept in .error and .last_traceback
            self._fail(exc)
        finally:
            sampler.close()
            self.run_button.disabled, self.stop_button.disabled = False, True

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self.last_traceback = "".join(traceback.format_exception(exc))
        if isinstance(exc, WorkbenchError):
            text = str(exc)
        else:
            text = f"{type(exc).__name__}: {exc} (the full traceback is in .last_traceback)"
        self.message.value = error_html(text)
        self.progress.bar_style = "danger"
        self.status.value = "<span class='workbench-status'>failed (see the message below)</span>"

    # -- figures and export ------------------------------------------------------------------

    def set_figures(self, figures: dict[str, "Figure"]) -> None:
        """Show figures (name -> Figure) as PNG images and enable export."""
        self.figures = dict(figures)
        self.images = images_of({name: figure_png(fig) for name, fig in self.figures.items()})
        self.figure_box.children = list(self.images.values())
        self.export_button.disabled = not self.figures

    def default_stem(self) -> Path:
        """Where Export writes by default: $WORKBENCH_HOME/exports/widgets/<kind>-<prompt>-seed<S>-<run id>,
        with -2, -3, ... added when that name was written before, so an export never overwrites another."""
        from workbench.home import exports_dir

        runs = self.provenance.get("runs") or []
        seed = self.provenance.get("seed", runs[0].get("seed") if runs else None)
        run_id = self.provenance.get("tree_id") or (runs[0].get("run_id") if runs else None)
        parts = [self.kind, slug(str(self.provenance.get("prompt", "figure")))]
        if seed is not None:
            parts.append(f"seed{seed}")
        if run_id:
            parts.append(str(run_id)[-8:].lower())
        base = exports_dir() / "widgets" / "-".join(parts)
        stem, copy = base, 1
        while any(stem.parent.glob(f"{stem.name}.*")) or any(stem.parent.glob(f"{stem.name}-*.provenance.json")):
            copy += 1
            stem = base.with_name(f"{base.name}-{copy}")
        return stem

    def export(self, stem: str | Path | None = None, formats: tuple[str, ...] | None = None) -> list[Path]:
        """Write the figure(s) with their provenance (PNG/SVG/PDF and a JSON sidecar); returns the paths."""
        from workbench.plots import export_figure

        if not self.figures:
            raise WorkbenchError("nothing to export yet: press Run first")
        stem = Path(stem) if stem is not None else self.default_stem()
        formats = tuple(formats or self.export_formats.value or ("png",))
        figure_formats = tuple(f for f in formats if f != "html")
        written: list[Path] = []
        for name, fig in self.figures.items() if figure_formats else ():
            target = stem if len(self.figures) == 1 else stem.parent / f"{stem.name}-{slug(name)}"
            written += export_figure(fig, target, {**self.provenance, "figure": name or self.kind}, figure_formats)
        if "html" in formats:
            written.append(self.export_report(stem.parent / f"{stem.name}.html"))
        return written

    def report_tables(self) -> dict[str, pd.DataFrame]:
        """The tables an exported report shows (default: every result frame; panels give their compact views)."""
        return dict(self.results)

    def reproduce_commands(self) -> list[str]:
        """Shell commands that redo this panel's result (the stored runs' own commands are added by the report)."""
        return []

    def export_report(self, path: str | Path) -> Path:
        """The result as one self-contained HTML report: figures, tables, provenance and the commands that redo it."""
        from workbench.report import result_report, write_report

        if not self.figures:
            raise WorkbenchError("nothing to export yet: press Run first")
        title = f"{type(self).__name__}: {self.provenance.get('prompt', self.kind)}"
        report = result_report(title, self.figures, self.report_tables(), self.provenance, self.sampler,
                               commands=self.reproduce_commands())
        return write_report(report, path)

    def _export_clicked(self) -> None:
        try:
            paths = self.export()
        except Exception as exc:  # noqa: BLE001
            self.export_status.value = error_html(str(exc))
            return
        self.export_status.value = ("<div style='font-size:11px'>wrote " +
                                    "<br>".join(html.escape(str(p)) for p in paths) + "</div>")
