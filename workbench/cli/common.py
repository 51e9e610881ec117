"""What the command modules share: flag groups, the Sampler factory, prompt and model arguments,
figure export, and the one-line error with exit status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from workbench.errors import WorkbenchError
from workbench.plots.export import slug

if TYPE_CHECKING:
    from workbench.config import SamplingOverrides
    from workbench.prompts import LibraryPrompt
    from workbench.sampler import Sampler

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# A library address: collection/prompt-id (anything else is prompt text).
LIBRARY_REF = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$")

# The sampling flags that become SamplingConfig fields (commands that lack some simply do not set them).
CONFIG_FLAGS = ("temperature", "top_p", "top_k", "max_tokens", "stop")

Command = Callable[[argparse.Namespace], None]


# -- running a command ------------------------------------------------------------------------


def run_command(func: Command, args: argparse.Namespace) -> int:
    """Run one command: user mistakes print one line and give exit status 2, Ctrl-C gives 130."""
    try:
        func(args)
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("workbench: interrupted; every finished sample is stored, run the same command to continue",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


# -- arguments --------------------------------------------------------------------------------


def make_sampler(args: argparse.Namespace | None = None) -> Sampler:
    """A Sampler set up by the run flags (--batch-size, --quiet); without them, one that shows no progress."""
    from workbench.sampler import Sampler

    if args is None:
        return Sampler(progress=False)
    return Sampler(batch_size=args.batch_size, progress=not args.quiet)


def resolve_prompt(value: str, sampler: Sampler) -> str | LibraryPrompt:
    """Prompt text, @file, or a library address collection/prompt-id (when the library has it)."""
    if LIBRARY_REF.match(value) and value in sampler.library:
        return sampler.library.get(value)
    return read_prompt(value)


def read_prompt(value: str) -> str:
    """A prompt from the command line, or from a file with @path."""
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if not path.is_file():
            raise WorkbenchError(f"prompt file {path} does not exist")
        try:
            return path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise WorkbenchError(f"cannot read prompt file {path}: {exc}") from None
    return value


def prompt_choices(args: argparse.Namespace) -> dict[str, Any]:
    """--var, --perturbation and --framing, which apply to library prompts."""
    variables = {}
    for item in args.var or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise WorkbenchError(f"--var expects NAME=VALUE, got {item!r}")
        variables[name] = parse_value(value)
    return {"variables": variables or None, "perturbation": args.perturbation, "framing": args.framing}


def parse_value(value: str) -> Any:
    """A --var value: an integer or number when it reads as one (grid values are often numbers), else text."""
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def config_fields(args: argparse.Namespace) -> SamplingOverrides:
    """The sampling flags this command has and the user gave, as SamplingConfig fields.

    Flags left out keep the defaults (a library prompt's suggested sampling, else the config's own).
    """
    given = {name: getattr(args, name, None) for name in CONFIG_FLAGS}
    return cast("SamplingOverrides", {name: value for name, value in given.items() if value is not None})


def model_list(args: argparse.Namespace) -> list[str]:
    """The --models list for a comparison: two or more registered names, checked before anything is sampled."""
    from workbench.registry import load_registry

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if len(models) < 2:
        raise WorkbenchError("--models needs two or more comma-separated model names")
    registry = load_registry()
    for m in models:
        registry.get(m)
    return models


def one_line(text: str, width: int = 90) -> str:
    """Text shortened to one line for a listing (newlines shown as \\n)."""
    return textwrap.shorten(text.replace("\n", "\\n"), width, placeholder="…") if text.strip() else repr(text)


# -- figures ----------------------------------------------------------------------------------


def figure_stem(args: argparse.Namespace, kind: str, name: str) -> Path:
    """--figure/--out as given, else $WORKBENCH_HOME/exports/figures/<kind>-<slug of name>."""
    from workbench.home import exports_dir

    if args.out:
        return Path(args.out)
    return exports_dir() / "figures" / f"{kind}-{slug(name, 60, fallback='prompt')}"


def export(args: argparse.Namespace, fig: Any, kind: str, name: str, provenance: dict[str, Any]) -> None:
    """Write the figure in --formats (or the one format its path names) with provenance; print the paths."""
    from workbench.plots import export_figure, figure_formats_for

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    stem, formats = figure_formats_for(figure_stem(args, kind, name), formats)  # --figure plot.png: that one
    paths = export_figure(fig, stem, provenance, formats=formats)
    print("wrote " + ", ".join(str(p) for p in paths))


# -- flag groups ------------------------------------------------------------------------------


def add_sampling_flags(parser: argparse.ArgumentParser, n_default: int) -> None:
    """--n, the SamplingConfig fields, --seed, --chat, the library-prompt choices and the run flags."""
    parser.add_argument("--n", type=int, default=n_default, help="samples per model (default %(default)s)")
    parser.add_argument("--temperature", type=float, help="0 = greedy (default 1)")
    parser.add_argument("--top-p", type=float, dest="top_p", help="nucleus mass (default 1: off)")
    parser.add_argument("--top-k", type=int, dest="top_k", help="keep k most likely tokens (default 0: off)")
    parser.add_argument("--max-tokens", type=int, dest="max_tokens", help="new tokens per sample (default 64)")
    parser.add_argument("--stop", action="append", help="stop string (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="run seed; sample i uses (seed, i) (default 0)")
    parser.add_argument("--chat", action="store_true", help="send the prompt as a user chat message")
    add_choice_flags(parser)
    add_run_flags(parser)


def add_choice_flags(parser: argparse.ArgumentParser) -> None:
    """--var, --perturbation and --framing for library prompts."""
    parser.add_argument("--var", action="append", metavar="NAME=VALUE",
                        help="library prompts: a template variable or grid choice (repeatable)")
    parser.add_argument("--perturbation", help="library prompts: the named segue for the {{ segue }} slot")
    parser.add_argument("--framing", help="library prompts: render under this framing")


def add_figure_flags(parser: argparse.ArgumentParser) -> None:
    """--figure/--out and --formats."""
    parser.add_argument("--figure", "--out", dest="out", metavar="PATH",
                        help="figure file (.png, .svg or .pdf), or a path without extension for every --formats "
                             "(default $WORKBENCH_HOME/exports/figures/...)")
    parser.add_argument("--formats", default="png,svg,pdf", help="comma-separated (default %(default)s)")


def add_cost_flags(parser: argparse.ArgumentParser) -> None:
    """--dry-run."""
    parser.add_argument("--dry-run", action="store_true", dest="dry_run",
                        help="show the requests to send and their estimated cost; send nothing")


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """--batch-size and --quiet, which set up the Sampler."""
    parser.add_argument("--batch-size", type=int, default=32, dest="batch_size", help="samples per batch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
