"""`workbench divergence`: where two local models part ways on the same text, token by token."""

from __future__ import annotations

import argparse

from workbench.cli.common import MODELS_HELP, make_sampler, model_list, one_line, read_prompt
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `divergence`."""
    p = sub.add_parser("divergence", help="two local models on the same text: per-token logprobs, the log-ratio of "
                                          "the actual token and the KL of the next-token distributions")
    p.add_argument("--models", required=True, help=MODELS_HELP + " (exactly two: A,B; ratios are B over A)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text to read (after --prompt), or @file")
    source.add_argument("--run", metavar="RUN_ID", help="every sample of a stored run, read after the run's prompt "
                                                        "(one of the two models must be the run's)")
    p.add_argument("--prompt", default="", help="with --text: the prompt before it (text or @file)")
    p.add_argument("--by", choices=("log_ratio", "kl"), default="log_ratio",
                   help="rank positions by the log-ratio of the actual token or by KL (default %(default)s)")
    p.add_argument("--top", type=int, default=5, help="positions shown per text (default %(default)s)")
    p.add_argument("--csv", metavar="PATH", help="write every row (the tidy frame) to this CSV file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_divergence)


def cmd_divergence(args: argparse.Namespace) -> None:
    """Print the per-token table of a text, or the top positions of every sample of a run."""
    from workbench.lens.divergence import HEADERS, divergent_tokens, run_divergence, text_divergence, top_positions

    models = model_list(args)
    if len(models) != 2:
        raise WorkbenchError("--models takes exactly two models, A,B")
    if args.top < 1:
        raise WorkbenchError(f"--top must be 1 or more, got {args.top}")
    sampler = make_sampler(argparse.Namespace(batch_size=32, quiet=args.quiet))
    a, b = models
    print(f"A = {a}, B = {b}")
    for column, meaning in HEADERS.items():
        print(f"  {column}: {meaning}")
    if args.text is not None:
        frame = text_divergence(sampler, a, b, read_prompt(args.prompt), read_prompt(args.text))
        shown = frame[["position", "token", "logprob_a", "logprob_b", "log_ratio", "kl", "top_a", "top_b"]]
        print(shown.round(3).to_string(index=False))
        print(f"largest {args.by}: " + ", ".join(f"{t!r} ({v:+.2f})" for t, v in
                                                 frame.nlargest(args.top, args.by)[["token", args.by]].itertuples(
                                                     index=False)))
    else:
        run = sampler.stored_run(args.run)
        if run.model not in models:
            raise WorkbenchError(f"--run {args.run} is a run of {run.model}; name it as one of --models")
        frame = run_divergence(sampler, run, b if run.model == a else a, "run" if run.model == a else "other")
        for index, rows in top_positions(frame, args.by, args.top).groupby("sample_index"):
            text = "".join(frame.loc[frame["sample_index"] == index, "token"])
            tops = ", ".join(f"{t!r} ({v:+.2f})" for t, v in rows[["token", args.by]].itertuples(index=False))
            print(f"sample {index}: {one_line(text, 60)}\n    largest {args.by}: {tops}")
        print(f"tokens with the largest mean {args.by} over the run:")
        print(divergent_tokens(frame, args.by).round(3).to_string(index=False))
    if args.csv:
        frame.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
