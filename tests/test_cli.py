"""The command line: happy paths on the embedded models, and one-line errors with exit status 2."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import NARROW, run_cli
from workbench import cli


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args, message",
    [
        (("sample", "hi", "--model", "gemma-270m"), "did you mean gemma-3-270m"),
        (("sample", "   ", "--model", "gemma-3-270m"), "prompt is empty"),
        (("sample", "hi", "--model", "gemma-3-270m", "--n", "0"), "n must be"),
        (("sample", "hi", "--model", "gemma-3-270m", "--temperature", "-1"), "temperature"),
        (("sample", "hi", "--model", "gemma-3-270m", "--top-p", "2"), "--top-p"),
        (("sample", "@/no/such/file.txt", "--model", "gemma-3-270m"), "/no/such/file.txt"),
        (("compare", "hi", "--models", "gemma-3-270m"), "two or more"),
        (("compare", "hi", "--models", "gemma-3-270m,nope"), "unknown model 'nope'"),
        (("compare", "hi", "--models", "gemma-3-270m,smollm2-135m-instruct", "--answer", "x"), "answer extractor"),
        (("runs", "show", "NOSUCHRUN"), "no run"),
        (("runs", "import", "/no/such/bundle.parquet"), "no such bundle"),
        (("models", "prepare", "nope"), "unknown model"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_2(capsys, args, message):
    code, out, err = run_main(capsys, *args)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("workbench: error: ")
    assert "Traceback" not in err + out


def test_a_store_that_cannot_be_opened_exits_2(capsys, tmp_path, monkeypatch):
    blocked = tmp_path / "store-is-a-dir"
    blocked.mkdir()
    monkeypatch.setenv("WORKBENCH_STORE", str(blocked))
    code, _, err = run_main(capsys, "runs", "list")
    assert code == 2 and "cannot open the run store" in err


def test_a_missing_backend_package_names_the_pip_install(capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real_find_spec(name, *a)
    )
    code, _, err = run_main(capsys, "sample", "hi", "--model", "gemma-3-270m")
    assert code == 2 and "pip install 'workbench[hf]'" in err


def test_a_broken_user_registry_names_the_file(capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text("models:\n  x: {backend: hf, kind: base}\n")
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    code, _, err = run_main(capsys, "models", "list")
    assert code == 2 and str(home / "models.yaml") in err and "family" in err


def test_argparse_mistakes_also_exit_2():
    result = run_cli("sample", "hi")  # --model missing
    assert result.returncode == 2 and "--model" in result.stderr


def test_sample_compare_and_runs_round_trip(embedded_models, tmp_path):
    result = run_cli("sample", "Once upon a time,", "--model", "gemma-3-270m", "--n", "3", "--max-tokens", "6",
                     "--quiet")
    assert result.returncode == 0, result.stderr
    assert "3 samples of gemma-3-270m (3 drawn, 0 from the store)" in result.stdout
    again = run_cli("sample", "Once upon a time,", "--model", "gemma-3-270m", "--n", "3", "--max-tokens", "6",
                    "--quiet")
    assert "(0 drawn, 3 from the store)" in again.stdout

    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("Name a colour.")
    compare = run_cli("compare", f"@{prompt_file}", "--models", "gemma-3-270m,smollm2-135m-instruct", "--chat",
                      "--n", "4", "--max-tokens", "5", "--answer", "first-word", "--quiet")
    assert compare.returncode == 0, compare.stderr
    assert "different families" in compare.stdout
    for column in ("distinct_continuations", "entropy_bits", "top_answer", "top_share"):
        assert column in compare.stdout

    listing = run_cli("runs", "list")
    run_ids = [line.split()[0] for line in listing.stdout.splitlines()[1:]]
    assert len(run_ids) == 3
    show = run_cli("runs", "show", run_ids[-1][:20])
    assert show.returncode == 0 and "transformers" in show.stdout and "config" in show.stdout
    bundle = tmp_path / "run.jsonl"
    assert run_cli("runs", "export", run_ids[-1], "--format", "jsonl", "--out", str(bundle)).returncode == 0
    imported = run_cli("runs", "import", str(bundle), env={"WORKBENCH_STORE": str(tmp_path / "colleague.sqlite")})
    assert imported.returncode == 0 and "3 samples added" in imported.stdout


def test_models_list_shows_kind_family_and_notes(capsys):
    code, out, _ = run_main(capsys, "models", "list")
    assert code == 0
    assert "gemma-3-270m  [base, gemma-3 family" in out
    assert "smollm2-135m-instruct  [tuned, smollm2 family" in out
    assert "default system prompt" in out and "different families" in out


def test_prompts_validate_list_and_show(capsys, tmp_path):
    code, out, _ = run_main(capsys, "prompts", "validate")
    assert code == 0 and out.startswith("ok: ")
    code, out, _ = run_main(capsys, "prompts", "list", "--tag", "personas")
    assert code == 0 and "personas/self-preservation-01" in out and "mode-collapse/" not in out
    code, out, _ = run_main(capsys, "prompts", "show", "personas/self-preservation-01", "--model", "gemma-3-270m",
                            "--framing", "questionnaire-transcript")
    assert code == 0 and "Respondent:" in out and "(raw)" in out
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.yaml").write_text("name: x\ndescription: d\nversion: 1\nprompts:\n"
                                "  - {id: a, kind: completion, text: 'Hi {{ who }}'}\n"
                                "  - {id: a, kind: completion, text: y}\n")
    code, _, err = run_main(capsys, "prompts", "validate", str(bad))
    assert code == 2
    assert "x.yaml:6" in err and "duplicate id" in err and "'who' is undefined" in err
    assert "2 problem(s) found" in err and "Traceback" not in err


def test_sample_and_compare_run_library_prompts_on_both_models(embedded_models):
    result = run_cli("sample", "attractors/wedding-toast", "--model", "smollm2-135m-instruct", "--n", "2",
                     "--perturbation", "murderer", "--max-tokens", "8", "--quiet")
    assert result.returncode == 0, result.stderr
    show = run_cli("runs", "list")
    assert "smollm2-135m-instruct" in show.stdout
    compare = run_cli("compare", "mode-collapse/coin-flip", "--models", "gemma-3-270m,smollm2-135m-instruct",
                      "--n", "4", "--quiet")
    assert compare.returncode == 0, compare.stderr
    assert "answer = the prompt's answer space" in compare.stdout
    assert "exact distribution of gemma-3-270m" in compare.stdout and "permutation test" in compare.stdout
    rows = [line for line in compare.stdout.splitlines()
            if line.split() and line.split()[0] in ("gemma-3-270m", "smollm2-135m-instruct")
            and line.split()[1] in ("base", "tuned")]
    # Two views (total, in-space), each with an exact and a sampled row per model; every total-view row has a
    # top answer (an in-space one has none when no sample fell inside the space).
    assert len(rows) == 8 and all(any(a in row for a in ("heads", "tails", "(other)")) for row in rows[:4])
    assert [row.split()[2] for row in rows[:4]] == ["exact", "sampled", "exact", "sampled"]
    bad = run_cli("sample", "mode-collapse/coin-flip", "--model", "gemma-3-270m", "--framing", "nope")
    assert bad.returncode == 2 and "no framing 'nope'" in bad.stderr




def test_compare_and_figures_show_both_views_and_warn_when_most_answers_fall_outside(embedded_models, tmp_path):
    """The regression scenario: both embedded models put ~99 % of their mass outside a narrow answer space
    (exact: P(other) 0.991 and 0.989 at T=1), and the total entropy falls as the temperature rises."""
    import json

    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "narrow.yaml").write_text(NARROW)
    env = {"WORKBENCH_PROMPTS": str(tmp_path / "prompts")}
    both = "gemma-3-270m,smollm2-135m-instruct"
    compare = run_cli("compare", "narrow/number-1-50", "--models", both, "--n", "4", "--quiet", env=env)
    assert compare.returncode == 0, compare.stderr
    out = compare.stdout
    for column in ("p_other", "entropy_bits", "top_answer", "top_share", "n_in_space", "entropy_bits_in_space",
                   "top_answer_in_space", "top_share_in_space"):
        assert column in out
    assert "total view" in out and "in-space view" in out
    assert "(other) (outside the space)" in out  # the top answer says what "(other)" is
    assert "WARNING: Most answers fall outside the answer space (P(other) > 0.5): gemma-3-270m 99% (exact)" in out
    assert "widen the answer space, or read the in-space numbers" in out
    assert "exact: plug-in (exact probabilities), no sampling error" in out and "sampled: Miller-Madow" in out
    assert "Jeffreys 95% interval" in out and "within the space:" in out

    sweep = run_cli("figure", "sweep", "narrow/number-1-50", "--models", both, "--temperatures", "1,2",
                    "--out", str(tmp_path / "sweep"), "--formats", "png", "--quiet", env=env)
    assert sweep.returncode == 0, sweep.stderr
    out = sweep.stdout
    header = out.splitlines()[0].split()
    assert header == ["model", "temperature", "method", "n", "p_other", "entropy_bits", "entropy_bits_in_space",
                      "top_answer"]
    assert out.count("(other) (outside the space)") == 4 and "WARNING: Most answers fall outside" in out
    assert "T = 1.0, 2.0" in out and "exact: plug-in (exact probabilities), no sampling error" in out
    rows = {(line.split()[0], line.split()[1]): line.split() for line in out.splitlines()[1:5]}
    base_1, base_2 = rows[("gemma-3-270m", "1.0")], rows[("gemma-3-270m", "2.0")]
    assert float(base_2[5]) < float(base_1[5])  # total entropy falls at high temperature ...
    assert float(base_2[6]) > 1.0  # ... while the in-space entropy stays high
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert json.loads((tmp_path / "sweep.provenance.json").read_text())["methods"] == ["exact"]

    figure = run_cli("figure", "distribution", "narrow/number-1-50", "--models", both, "--n", "4",
                     "--out", str(tmp_path / "distribution"), "--formats", "png", "--quiet", env=env)
    assert figure.returncode == 0, figure.stderr
    assert "(other) (outside the space)" in figure.stdout and "WARNING: Most answers fall outside" in figure.stdout
    assert "the figure's right panel" in figure.stdout


def test_figure_commands_write_all_formats_with_provenance(embedded_models, tmp_path):
    import json

    both = "gemma-3-270m,smollm2-135m-instruct"
    cases = [
        ("distribution", "mode-collapse/random-digit-sequence", "--models", both, "--n", "8"),
        ("sweep", "mode-collapse/random-digit-sequence", "--models", both, "--temperatures", "0.5,1.5"),
        ("embedding", "Tell me about your day.", "--chat", "--models", both, "--n", "6", "--max-tokens", "12"),
        ("heatmap", "--collection", "mode-collapse", "--models", both, "--prompts",
         "random-digit-sequence,coin-flip-completion", "--n", "4"),
    ]
    for kind, *rest in cases:
        stem = tmp_path / kind
        result = run_cli("figure", kind, *rest, "--out", str(stem), "--quiet")
        assert result.returncode == 0, (kind, result.stderr[-2000:])
        for suffix in (".png", ".svg", ".pdf", ".provenance.json"):
            assert (tmp_path / f"{kind}{suffix}").stat().st_size > 0, (kind, suffix)
        provenance = json.loads((tmp_path / f"{kind}.provenance.json").read_text())
        assert provenance["workbench"] and "different families" in provenance["families"]
    assert "exact" in json.loads((tmp_path / "distribution.provenance.json").read_text())["methods"].values()
    bad = run_cli("figure", "sweep", "mode-collapse/coin-flip", "--models", both, "--temperatures", ",")
    assert bad.returncode == 2 and "--temperatures is empty" in bad.stderr


def test_each_noun_registers_its_own_commands_next_to_their_code():
    import argparse

    def handlers(parser: argparse.ArgumentParser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from handlers(sub)
        if "func" in parser._defaults:
            yield parser.prog, parser._defaults["func"]

    commands = {prog.split()[1] for prog, _ in handlers(cli.build_parser())}
    assert commands == {"models", "sample", "compare", "prompts", "figure", "experiment", "persona", "segue", "tree",
                        "selfchat", "tune", "directions", "steer", "divergence", "runs", "report", "batches", "demo"}
    for noun in cli.NOUNS:
        parser = argparse.ArgumentParser()
        noun.register(parser.add_subparsers())
        assert all(func.__module__ == noun.__name__ for _, func in handlers(parser)), noun.__name__
