"""`workbench steer`: a steering sweep over layers and coefficients, with damage guards, a table, a figure and
a CSV."""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any

from workbench.cli.common import (
    add_n_flag,
    add_seed_flag,
    finite_float,
    make_sampler,
    max_tokens_value,
    temperature_value,
)
from workbench.cli.directions import parse_layers
from workbench.cli.figures import add_width_flag
from workbench.errors import WorkbenchError

MEASURES = ("persona", "answers", "keywords", "segue")  # workbench.lens.MEASURES, without importing the lens
OPERATORS = ("add", "ablate", "ablate-add")
POSITIONS = ("all-but-bos", "all", "response")
# argparse (3.11) reads "-1,0,1" after a flag as another flag; a value starting "-<digit>" or "-.<digit>" is a
# number here (this command has no flag that looks like one).
NEGATIVE_NUMBERS = re.compile(r"^-\.?\d")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `steer`."""
    p = sub.add_parser("steer", help="steer a model along a direction over layers x coefficients: the measure "
                                     "beside the damage it does (prose NLL, neutral KL)")
    p._negative_number_matcher = NEGATIVE_NUMBERS  # --coefficients -1,0,1
    p.add_argument("--model", required=True, help="the (unsteered) registry model")
    p.add_argument("--direction", required=True, help="a saved direction (`workbench directions list`)")
    p.add_argument("--layers", required=True, help="blocks to steer after, one at a time, e.g. 1,3 or 2-5")
    p.add_argument("--coefficients", help="comma-separated, e.g. -1,0,1 (x the layer's median residual norm; "
                                          "with --raw: x the direction as saved); not with --operator ablate")
    p.add_argument("--measure", required=True, choices=MEASURES,
                   help="persona (--trait: exact P(matching answer)), answers (--prompt: exact in-space entropy), "
                        "keywords (--prompt and --labels: share of continuations with the words) or segue "
                        "(--prompt: recovery after its segues)")
    p.add_argument("--prompt", help="a library prompt, e.g. mode-collapse/once-upon-a-time (answers, keywords, "
                                    "segue)")
    p.add_argument("--trait", help="the persona trait (persona), e.g. self-preservation")
    p.add_argument("--framing", help="persona: the framing the items are rendered in (default: the collection's "
                                     "first)")
    p.add_argument("--per-trait", type=int, dest="per_trait",
                   help="persona: only the first K items of each keying (agree / disagree), for a quicker sweep")
    p.add_argument("--collection", default="personas", help="persona: the collection the trait is in "
                                                            "(default %(default)s)")
    p.add_argument("--labels", metavar="REF:LABEL",
                   help="keywords: a prompt's label set, e.g. attractors/wedding-toast:celebration, or JSON "
                        "{\"keywords\": [...]}")
    p.add_argument("--operator", choices=OPERATORS, default="add",
                   help="add c x direction, ablate (project it out), or both (default %(default)s)")
    p.add_argument("--raw", action="store_true", help="coefficients in the direction's own units, not x the "
                                                      "layer's median residual norm")
    p.add_argument("--positions", choices=POSITIONS, default="all-but-bos",
                   help="which tokens are steered (default %(default)s)")
    add_n_flag(p, 16, "continuations per point (keywords, segue)")
    add_seed_flag(p)
    p.add_argument("--max-tokens", type=max_tokens_value, default=32, dest="max_tokens",
                   help="new tokens per continuation (default %(default)s)")
    p.add_argument("--temperature", type=temperature_value, default=1.0, help="sampling temperature (default 1)")
    p.add_argument("--threshold", type=finite_float, default=0.10,
                   help="relative prose-NLL rise that flags a point as damaged (default %(default)s = +10 %%)")
    p.add_argument("--out", metavar="STEM", help="figure and CSV path without extension (default "
                                                  "$WORKBENCH_HOME/exports/figures/steer-...)")
    p.add_argument("--formats", default="png,pdf", help="figure formats, comma-separated (default %(default)s)")
    add_width_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_steer)


def coefficients(value: str) -> list[float]:
    """--coefficients: finite numbers separated by commas, at least one."""
    try:
        parsed = [float(c) for c in value.split(",") if c.strip()]
    except ValueError:
        raise WorkbenchError(f"--coefficients expects numbers separated by commas (e.g. -1,0,1), got {value!r}") \
            from None
    if not parsed:
        raise WorkbenchError("--coefficients is empty; give e.g. 0,0.5,1")
    if not all(math.isfinite(c) for c in parsed):
        raise WorkbenchError(f"--coefficients must be finite numbers, got {value!r}")
    return list(dict.fromkeys(parsed))


def _labels(value: str | None) -> str | dict[str, Any] | None:
    """--labels as given, or the JSON label set it spells."""
    if value is None or not value.lstrip().startswith("{"):
        return value
    try:
        labels = json.loads(value)
    except json.JSONDecodeError as exc:
        raise WorkbenchError(f"--labels: not valid JSON ({exc.msg}); write REF:LABEL or "
                             "'{\"keywords\": [\"love\", \"toast\"]}'") from None
    if not isinstance(labels, dict):
        raise WorkbenchError("--labels: JSON labels are an object, e.g. '{\"keywords\": [\"love\"]}'")
    return labels


def _check_flags(args: argparse.Namespace) -> list[float]:
    """The flags that go together, named before anything loads; the coefficient grid."""
    if args.operator == "ablate":
        if args.coefficients is not None:
            raise WorkbenchError("--operator ablate takes no coefficients (it projects the direction out); drop "
                                 "--coefficients, or use --operator ablate-add")
        grid: list[float] = []
    elif args.coefficients is None:
        raise WorkbenchError(f"--operator {args.operator} needs --coefficients, e.g. --coefficients=-1,0,1")
    else:
        grid = coefficients(args.coefficients)
    if args.measure == "persona":
        if not args.trait:
            raise WorkbenchError("--measure persona needs --trait (e.g. --trait self-preservation)")
        if args.prompt or args.labels:
            raise WorkbenchError("--measure persona scores a trait's items: drop --prompt/--labels")
    else:
        if not args.prompt:
            raise WorkbenchError(f"--measure {args.measure} needs --prompt, a library prompt "
                                 "(e.g. mode-collapse/once-upon-a-time)")
        if args.trait:
            raise WorkbenchError(f"--trait goes with --measure persona, not {args.measure}; drop it")
        if args.measure == "keywords" and not args.labels:
            raise WorkbenchError("--measure keywords needs --labels, e.g. attractors/wedding-toast:celebration")
        if args.labels and args.measure != "keywords":
            raise WorkbenchError(f"--labels goes with --measure keywords, not {args.measure}; drop it")
    if args.per_trait is not None and (args.measure != "persona" or args.per_trait < 1):
        raise WorkbenchError("--per-trait is a number of items of at least 1, with --measure persona")
    if not 0 < args.threshold:
        raise WorkbenchError(f"--threshold is a relative rise above 0 (0.1 = +10 %), got {args.threshold}")
    return grid


def cmd_steer(args: argparse.Namespace) -> None:
    """Run the sweep, print its table and notes, write the figure and the CSV."""
    from workbench.direction_files import load_direction
    from workbench.plots.export import FORMATS

    grid = _check_flags(args)
    unknown = [f for f in args.formats.split(",") if f.strip() and f.strip() not in FORMATS]
    if unknown:  # before the sweep, not after it
        raise WorkbenchError(f"--formats: unknown {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    layers = parse_layers(args.layers) or []
    labels = _labels(args.labels)
    direction = load_direction(args.direction)  # an unknown direction or a missing layer fails before any model
    for layer in layers:
        try:
            direction.vector(layer)
        except WorkbenchError as exc:
            raise WorkbenchError(f"--layers: {exc}") from None
    from workbench.lens import steering_sweep

    sampler = make_sampler(argparse.Namespace(batch_size=32, quiet=args.quiet))
    spec = sampler.model(args.model)
    made_on = direction.metadata.get("model")
    sweep = steering_sweep(sampler, args.model, args.direction, layers, grid, args.measure, args.prompt,
                           trait=args.trait, framing=args.framing, labels=labels, operator=args.operator,
                           units="raw" if args.raw else "median-norm", positions=args.positions, n=args.n,
                           seed=args.seed, max_tokens=args.max_tokens, temperature=args.temperature,
                           per_trait=args.per_trait, collection=args.collection, threshold=args.threshold)
    if made_on and made_on != spec.name:
        print(f"note: direction {direction.name} was extracted from {made_on}; {spec.name} was steered with it")
    print(f"{sweep.parent} steered along {sweep.direction} ({args.operator}, {sweep.units}, positions "
          f"{sweep.positions}): {sweep.measure_label}")
    parent = sweep.parent_point
    print(f"unsteered parent: {_estimate(parent['value'], parent['ci_low'], parent['ci_high'])}"
          + (f", p_answered {parent['p_answered']:.2f}" if _finite(parent.get("p_answered")) else "")
          + f"; prose NLL {parent['prose_nll']:.3f} nats/token")
    print(sweep_table(sweep.frame).to_string(index=False))
    for note in sweep.notes:
        print(f"note: {note}")
    _write(args, sweep, direction.content_hash, grid, layers)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _estimate(value: float, low: float, high: float) -> str:
    """'0.250 [0.046, 0.699]', or the value alone when it has no interval (exact)."""
    if not _finite(value):
        return "–"
    if _finite(low) and _finite(high) and high > low:
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return f"{value:.3f}"


def sweep_table(frame: Any) -> Any:
    """The sweep as a compact text table: one row per point, the guards beside the measure, damage flagged."""
    import pandas as pd

    table = pd.DataFrame({"layer": frame["layer"],
                          "coefficient": ["–" if not _finite(c) else f"{c:g}" for c in frame["coefficient"]]})
    table["value [95% CI]"] = [_estimate(r.value, r.ci_low, r.ci_high) for r in frame.itertuples()]
    for column in ("p_answered", "top_share", "wrong_way_share"):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().any():
            table[column] = ["–" if pd.isna(v) else f"{v:.2f}" for v in values]
    table["prose NLL"] = [f"{v * 100:+.1f} %" for v in frame["nll_change"]]
    table["KL (nats)"] = [f"{v:.4f}" for v in frame["kl_neutral"]]
    table["damage"] = ["DAMAGED" if bool(d) else "" for d in frame["damaged"]]
    if frame["measure"].isin(["persona", "answers"]).any():
        table["answers?"] = ["UNANSWERED" if bool(u) else "" for u in frame["unanswered"]]
    if frame["top_answer"].astype(str).str.len().gt(0).any():
        table.insert(3, "top answer", list(frame["top_answer"]))
    return table


def _write(args: argparse.Namespace, sweep: Any, direction_hash: str, grid: list[float], layers: list[int]) -> None:
    """The figure (with provenance) and the frame as CSV beside it; prints the paths."""
    from pathlib import Path

    from workbench.home import exports_dir
    from workbench.plots import export_figure, figure_formats_for, steering_sweep_figure
    from workbench.plots.export import slug

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    default = exports_dir() / "figures" / f"steer-{slug(f'{sweep.parent}-{sweep.direction}-{sweep.measure}', 80)}"
    stem, formats = figure_formats_for(Path(args.out) if args.out else default, formats)
    fig = steering_sweep_figure(sweep.frame, sweep.measure_label, parent_value=sweep.parent_point.get("value"),
                                threshold=sweep.threshold, note="; ".join(sweep.notes))
    provenance = {"command": "steer", "parent": sweep.parent, "direction": sweep.direction,
                  "direction_hash": direction_hash, "layers": layers, "coefficients": grid,
                  "operator": sweep.operator, "units": sweep.units, "positions": sweep.positions,
                  "measure": sweep.measure, "measure_label": sweep.measure_label, "prompt": args.prompt,
                  "trait": args.trait, "framing": args.framing, "labels": args.labels, "n": args.n, "seed": args.seed,
                  "max_tokens": args.max_tokens, "temperature": args.temperature, "threshold": sweep.threshold,
                  "models": list(dict.fromkeys(sweep.frame["model"])), "parent_point": sweep.parent_point,
                  "notes": sweep.notes}
    paths = export_figure(fig, stem, provenance, formats=formats, width=args.width)
    csv = stem.parent / f"{stem.name}.csv"
    sweep.frame.to_csv(csv, index=False)
    print("wrote " + ", ".join(str(p) for p in [*paths, csv]))
