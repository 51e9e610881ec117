"""`workbench demo`: the planted effects found (or not) by the workbench's instruments, and a report.

Stages run first, each with one progress bar on stderr; the findings are printed together at the
end, so no bar interleaves with them. Everything sampled goes to the store and exact scores are
kept there too: a second run answers from the store without loading a model.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from workbench.demo import findings
from workbench.demo.findings import Finding, FindingResult
from workbench.home import exports_dir
from workbench.plots import export_figure
from workbench.report import Report, ReportSection, ReportTable, write_report
from workbench.sampler import Sampler

DEFAULT_N = 8  # continuations per model and segue condition: the planted effect is large (~0.25 vs ~0.99)
MAX_TOKENS = 32
VERDICT_WIDTH = 10
PROBE_WIDTH = 14


@dataclass
class DemoResult:
    """What the demo found: one Finding per printed row, and the report it wrote."""

    findings: list[Finding]
    report: Path
    seconds: float

    @property
    def all_found(self) -> bool:
        """Whether every planted effect was found (the cross-family row plants nothing)."""
        return all(f.found for f in self.findings if f.found is not None)


@contextmanager
def _stage(name: str, total: int, show: bool) -> Iterator[Callable[[], None]]:
    bar = tqdm(total=total, desc=name, unit="step", file=sys.stderr, disable=not show, leave=True,
               bar_format="{desc:<16} {bar:20} {n_fmt}/{total_fmt} [{elapsed}]")
    try:
        yield lambda: bar.update(1)
    finally:
        bar.close()


def _line(finding: Finding) -> str:
    return (f"{finding.verdict:<{VERDICT_WIDTH}}{finding.probe:<{PROBE_WIDTH}}{finding.measured}: {finding.number}"
            f"  (planted: {finding.planted})")


def run_demo(n: int = DEFAULT_N, sampler: Sampler | None = None, out_dir: Path | None = None,
             max_tokens: int = MAX_TOKENS, seed: int = 0) -> DemoResult:
    """Measure the three planted effects and the cross-family pair, print one line per finding, write the report.

    `n`: sampled continuations per model and segue condition, drawn with `seed` (the other findings are exact). A
    sampler made here is closed at the end; one passed in stays open.
    """
    if sampler is None:
        with Sampler() as owned:
            return run_demo(n, owned, out_dir, max_tokens, seed)
    started = time.perf_counter()
    out_dir = out_dir or exports_dir() / "demo"
    show = sampler.progress
    segue_runs = 2 * (1 + len(sampler.library.get(findings.SEGUE_PROMPT).spec.perturbations))
    stages: list[tuple[str, int, Callable[[Callable[[], None]], FindingResult]]] = [
        ("mode collapse", 2, lambda step: findings.mode_collapse(sampler, step)),
        ("attractor", segue_runs, lambda step: findings.attractor(sampler, step, n, max_tokens, seed)),
        ("persona", 2, lambda step: findings.persona(sampler, step)),
        ("cross-family", 2, lambda step: findings.cross_family(sampler, step)),
    ]
    results: list[FindingResult] = []
    sampler.progress = False  # the stage bars stand for the runs inside them
    try:
        for name, total, measure in stages:
            with _stage(name, total, show) as step:
                results.append(measure(step))
        with _stage("report", 1, show) as step:
            report_path = _write(results, out_dir, n, seed)
            step()
    finally:
        sampler.progress = show
    rows = [row for result in results for row in result.rows]
    seconds = time.perf_counter() - started
    _print(rows, sampler, seconds)
    print(f"report: {report_path}")
    return DemoResult(rows, report_path, seconds)


def _write(results: list[FindingResult], out_dir: Path, n: int, seed: int) -> Path:
    """The HTML report, and each figure as a PNG with its provenance beside it."""
    for i, result in enumerate(results, start=1):
        for j, item in enumerate(result.section.figures, start=1):
            export_figure(item.figure, out_dir / f"{i}-{j}-{result.rows[0].probe.replace(' ', '-')}",
                          {**result.section.provenance, "caption": item.caption}, formats=("png",))
    intro = ("Three effects were planted on purpose in LoRA fine-tunes of gemma-3-270m (data/tuned/), so each "
             "instrument can be checked against a known answer: a favourite number (37), a wedding attractor and "
             "a self-preservation persona. Each is measured against the base with the workbench's public "
             "functions; FOUND means the planted answer was recovered by the criterion given in the row "
             "(workbench/demo/findings.py). The last section compares the embedded cross-family pair, where "
             f"nothing was planted. Sampled numbers: n = {n} continuations per model and condition.")
    rows = [row for result in results for row in result.rows]
    summary = ReportSection("What the demo found", tables=[ReportTable(
        findings.findings_table(rows), "One row per finding; exact numbers have no sampling error, sampled ones "
        "carry 95 % intervals [low, high].", "verdict: FOUND when the planted answer was recovered by the "
        "criterion in workbench/demo/findings.py; '-' where nothing was planted.")])
    report = Report("Workbench demo: planted effects and what the instruments found",
                    [summary, *(result.section for result in results)], intro=intro,
                    provenance={"command": f"workbench demo --n {n} --seed {seed}", "n": n, "seed": seed})
    path = write_report(report, out_dir / "report.html")
    for result in results:
        for item in result.section.figures:
            item.figure.clear()
    return path


def _print(rows: list[Finding], sampler: Sampler, seconds: float) -> None:
    planted = [row for row in rows if row.found is not None]
    effects = {row.probe: all(r.found for r in planted if r.probe == row.probe) for row in planted}
    print("Planted effects: LoRA variants of gemma-3-270m, each measured against gemma-3-270m (its base).")
    print("Exact numbers have no sampling error; sampled ones carry 95 % intervals [low, high].\n")
    print(f"{'verdict':<{VERDICT_WIDTH}}{'probe':<{PROBE_WIDTH}}measured: result  (planted answer)")
    for row in rows:
        print(_line(row))
    print(f"\n{sum(effects.values())} of {len(effects)} planted effects found ({', '.join(effects)}). The "
          "cross-family line has no planted answer: its models differ in pretraining, not only in tuning.")
    notebooks = Path(__file__).resolve().parents[2] / "notebooks"
    print(f"Runs and exact scores are stored in {sampler.store.path}; `workbench runs list` shows the runs.")
    if any(notebooks.glob("*.ipynb")):
        print(f"Notebooks: {notebooks} (open them with `make lab`).")
    print(f"Done in {seconds:.0f} s.")
