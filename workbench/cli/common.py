"""What the command modules share: running a command (one line for every error), checked flag types and
flag groups, the Sampler factory, prompt and model arguments, and figure export.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import textwrap
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from workbench.config import MAX_NEW_TOKENS, MAX_SEED, MAX_TEMPERATURE
from workbench.errors import WorkbenchError
from workbench.guarded.limits import env_number
from workbench.plots.export import slug

if TYPE_CHECKING:
    from workbench.config import SamplingOverrides
    from workbench.prompts import LibraryPrompt
    from workbench.sampler import Sampler

EXIT_INTERNAL_ERROR = 1  # a bug: one line, the traceback in a file
EXIT_USER_ERROR = 2  # something the user can fix: one line that says what
EXIT_INTERRUPTED = 130

# --n above this needs --allow-large-n: a slip of the keyboard (an extra zero or three) should not start a run
# of days or a bill. A research run that really wants more says so.
DEFAULT_MAX_N = 100_000
MAX_N_ENV = "WORKBENCH_MAX_N"
DEBUG_ENV = "WORKBENCH_DEBUG"

# A library address: collection/prompt-id (anything else is prompt text).
LIBRARY_REF = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$")

# The sampling flags that become SamplingConfig fields (commands that lack some simply do not set them).
CONFIG_FLAGS = ("temperature", "top_p", "top_k", "max_tokens", "stop")

# Environment variables whose values are scrubbed from a written traceback (API keys and the like).
_SECRET_VARIABLE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$")

Command = Callable[[argparse.Namespace], None]

# Model flags take registry names and inline steered models alike (no comma in their syntax).
MODEL_HELP = ("a registry name (see `workbench models list`) or a steered model, "
              "e.g. gemma-3-270m@wedding-embedding@L1@add0.02")
MODELS_HELP = "comma-separated registry names or steered models (PARENT@DIRECTION@L1@add0.02), e.g. A,B"


# -- running a command ------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line naming the flag, with exit status 2 (argparse prints the
    whole usage block). Flags are never abbreviated: `--model` given to a command that has `--models` is a
    mistake to report, not a guess to make (subcommands' parsers are of this class too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print `workbench: error: <message> (see `<command> --help`)` and exit 2."""
        self.exit(EXIT_USER_ERROR, f"workbench: error: {message} (see `{self.prog} --help`)\n")


def run_command(func: Command, args: argparse.Namespace) -> int:
    """Run one command and turn every error into one line on stderr.

    Mistakes the user can fix give exit status 2; Ctrl-C gives 130 (every finished sample is stored); anything
    else is a bug: one line saying where its traceback was written, exit status 1 (`--debug` or
    WORKBENCH_DEBUG=1 print the traceback instead).
    """
    debug = bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        check_n(args)
        func(args)
    except KeyboardInterrupt:
        print("workbench: interrupted; every finished sample is stored, run the same command to continue",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read our output has gone (`workbench runs list | head`): nothing to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INTERNAL_ERROR
    except Exception as exc:  # noqa: BLE001 - the one place that turns every error into one line
        message = user_error_message(exc)
        if message is None:
            return report_internal_error(exc, debug)
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"workbench: error: {single_line(scrub(message))}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def user_error_message(exc: Exception) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug.

    Besides WorkbenchError, library errors that reach here only from the user's own input count: a pydantic
    validation error, a YAML error, an OS error on a named path, and a run store SQLite cannot read or write.
    """
    import sqlite3

    import yaml
    from pydantic import ValidationError

    if isinstance(exc, WorkbenchError):
        return str(exc)
    if isinstance(exc, ValidationError):
        from workbench.config import describe_validation_error

        return describe_validation_error(exc, exc.title)
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.name}, line {mark.line + 1}: " if mark else ""
        return f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc}); fix the file"
    if isinstance(exc, OSError) and exc.filename is not None:
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        return f"{paths}: {exc.strerror or exc}; check the path and its permissions"
    if type(exc) is sqlite3.DatabaseError or (
        isinstance(exc, sqlite3.OperationalError)
        and re.search(r"locked|readonly|disk|unable to open|full", str(exc))
    ):
        from workbench.home import store_path

        return (f"the run store {store_path()} cannot be used ({exc}); check the file, free the disk or "
                "close the other program using it, or set WORKBENCH_STORE to another store")
    return None


def report_internal_error(exc: BaseException, debug: bool) -> int:
    """A bug: print the traceback (debug), or one line saying where the scrubbed traceback was written."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    summary = textwrap.shorten(single_line(scrub(f"{type(exc).__name__}: {exc}")), 300, placeholder="…")
    try:
        where = f"the traceback is in {write_traceback(exc)}"
    except OSError as failed:
        where = f"the traceback could not be written ({failed})"
    print(f"workbench: internal error: {summary}; {where}; please report it (or rerun the same command "
          "with --debug to see it here)",
          file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def write_traceback(exc: BaseException) -> Path:
    """$WORKBENCH_HOME/logs/error-<time>.txt: the command line and the traceback, credentials scrubbed."""
    from workbench.home import workbench_home
    from workbench.version import __version__

    logs = workbench_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"error-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}.txt"
    text = (f"workbench {__version__}, Python {sys.version.split()[0]}\n"
            f"command: {' '.join(sys.argv)}\n\n" + "".join(traceback.format_exception(exc)))
    path.write_text(scrub(text), encoding="utf-8")
    return path


def scrub(text: str) -> str:
    """Text with credentials removed: key-shaped values, and the values of key-like environment variables."""
    from workbench.secrets import scrub_text

    return scrub_text(text, [value for name, value in os.environ.items() if _SECRET_VARIABLE.search(name.upper())])


def single_line(text: str) -> str:
    """Text on one line (newlines and runs of spaces become one space)."""
    return " ".join(str(text).split())


# -- checked flag values ----------------------------------------------------------------------


def whole_number(text: str) -> int:
    """argparse type: a whole number (its range is checked where the message can say more)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (counts, sizes, steps)."""
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def seed_value(text: str) -> int:
    """argparse type: a seed, a whole number from 0 to 2**63-1 (what the store keeps)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to {MAX_SEED} (2**63-1), got {text}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (not inf or nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def temperature_value(text: str) -> float:
    """argparse type: a temperature, a finite number from 0 (greedy) to 100."""
    value = finite_float(text)
    if not 0 <= value <= MAX_TEMPERATURE:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_TEMPERATURE:g}, got {text}")
    return value


def top_p_value(text: str) -> float:
    """argparse type: a nucleus mass, above 0 and at most 1."""
    value = finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text}")
    return value


def top_k_value(text: str) -> int:
    """argparse type: a top-k, 0 (off) or more."""
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or more, got {text}")
    return value


def max_tokens_value(text: str) -> int:
    """argparse type: new tokens per sample, from 1 to 32768."""
    value = whole_number(text)
    if not 1 <= value <= MAX_NEW_TOKENS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_NEW_TOKENS}, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0 (seconds)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number of at least 0 (dollars)."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def max_n() -> int:
    """The largest --n a command takes without --allow-large-n: $WORKBENCH_MAX_N, else 100000."""
    return env_number(MAX_N_ENV, DEFAULT_MAX_N, int, "a whole number")


def check_n(args: argparse.Namespace) -> None:
    """Refuse an --n below 1, or above the maximum unless --allow-large-n says it is meant."""
    n = getattr(args, "n", None)
    if n is None:
        return
    if n < 1:
        raise WorkbenchError(f"--n must be at least 1, got {n}")
    if getattr(args, "allow_large_n", False) or getattr(args, "dry_run", False):
        return  # a dry run only estimates: it answers for any n
    limit = max_n()
    if n > limit:
        raise WorkbenchError(f"--n {n} is above the maximum of {limit} samples per model; pass --allow-large-n to "
                             f"draw it anyway, or set {MAX_N_ENV}")


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
        if path.is_dir():
            raise WorkbenchError(f"prompt file {path} is a folder, not a file; give a file after @ "
                                 "(@path/to/prompt.txt)")
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


def finite_json(data: Any) -> Any:
    """A copy of JSON-ready data with NaN and infinities as null (they are not JSON)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_json(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [finite_json(value) for value in data]
    return data


def write_json(path: str | Path, data: Any) -> Path:
    """Write data as strict JSON (non-finite numbers as null) to `path`, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite_json(data), ensure_ascii=False, indent=1, allow_nan=False) + "\n",
                    encoding="utf-8")
    return path


# -- flag groups ------------------------------------------------------------------------------


def add_sampling_flags(parser: argparse.ArgumentParser, n_default: int) -> None:
    """--n, the SamplingConfig fields, --seed, --chat, the library-prompt choices and the run flags."""
    add_n_flag(parser, n_default, "samples per model")
    parser.add_argument("--temperature", type=temperature_value, help="0 = greedy (default 1; at most 100)")
    parser.add_argument("--top-p", type=top_p_value, dest="top_p", help="nucleus mass, above 0 (default 1: off)")
    parser.add_argument("--top-k", type=top_k_value, dest="top_k", help="keep k most likely tokens (default 0: off)")
    parser.add_argument("--max-tokens", type=max_tokens_value, dest="max_tokens",
                        help=f"new tokens per sample (default 64, at most {MAX_NEW_TOKENS})")
    parser.add_argument("--stop", action="append", help="stop string (repeatable)")
    add_seed_flag(parser, "run seed; sample i uses (seed, i) (default 0)")
    parser.add_argument("--chat", action="store_true", help="send the prompt as a user chat message")
    add_choice_flags(parser)
    add_run_flags(parser)


def add_n_flag(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    """--n (at least 1; above the maximum only with --allow-large-n) and --allow-large-n."""
    parser.add_argument("--n", type=whole_number, default=default, help=f"{what} (default %(default)s)")
    parser.add_argument("--allow-large-n", action="store_true", dest="allow_large_n",
                        help=f"allow --n above the maximum ({MAX_N_ENV}, default {DEFAULT_MAX_N})")


def add_seed_flag(parser: argparse.ArgumentParser, what: str = "run seed (default 0)") -> None:
    """--seed: a whole number from 0 to 2**63-1."""
    parser.add_argument("--seed", type=seed_value, default=0, help=what)


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
    parser.add_argument("--batch-size", type=positive_int, default=32, dest="batch_size", help="samples per batch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
