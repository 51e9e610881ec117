"""Issue 15 (failure 5, wants 4 and 6): bounds that say what to do, and one line, never a traceback, from the CLI.

Each case uses the exact input the issue measured. The models are a fake OpenAI-compatible server registered in
a temporary $WORKBENCH_HOME (no language model loads), except the chat-template cases, which need only the
embedded instruct model's tokenizer.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import REAL_MODELS_DIR, run_cli
from workbench import cli
from workbench.errors import ConfigError, WorkbenchError
from workbench.testing.openai_server import FakeOpenAIServer

HUGE_N = "10000000"  # the issue's --n
HUGE_SEED = "99999999999999999999999"  # the issue's --seed


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_user_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("workbench: ") and err.count("\n") == 1, err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A $WORKBENCH_HOME of this test's own (the prepared models linked in), for its models.yaml and logs."""
    path = tmp_path / "home"
    path.mkdir()
    (path / "models").symlink_to(REAL_MODELS_DIR, target_is_directory=True)
    monkeypatch.setenv("WORKBENCH_HOME", str(path))
    monkeypatch.delenv("WORKBENCH_DEBUG", raising=False)
    monkeypatch.delenv("WORKBENCH_MAX_N", raising=False)
    return path


@pytest.fixture
def fake(home) -> FakeOpenAIServer:
    """The fake server, registered as model `fake` in the test's home."""
    with FakeOpenAIServer() as server:
        entry = {"backend": "openai", "kind": "base", "family": "fake", "api_model": "fake-model",
                 "base_url": server.base_url, "api_dialect": "llama.cpp"}
        (home / "models.yaml").write_text(json.dumps({"models": {"fake": entry}}))  # JSON is YAML
        yield server


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(constant: str):
        raise ValueError(f"non-JSON number {constant}")
    return json.loads(text, parse_constant=refuse)


# -- bounds -------------------------------------------------------------------------------------


def test_n_above_the_maximum_needs_an_explicit_flag(capsys, fake):
    code, out, err = run_main(capsys, "sample", "hi", "--model", "fake", "--n", HUGE_N, "--quiet")
    assert_one_line_user_error(code, out, err, f"--n {HUGE_N} is above the maximum of 100000", "--allow-large-n",
                               "WORKBENCH_MAX_N")
    assert not fake.state.requests


def test_the_maximum_n_is_configurable(capsys, fake, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MAX_N", "5")
    code, out, err = run_main(capsys, "sample", "hi", "--model", "fake", "--n", "6", "--quiet")
    assert_one_line_user_error(code, out, err, "--n 6 is above the maximum of 5")
    monkeypatch.setenv("WORKBENCH_MAX_N", "lots")
    code, out, err = run_main(capsys, "sample", "hi", "--model", "fake", "--n", "6", "--quiet")
    assert_one_line_user_error(code, out, err, "WORKBENCH_MAX_N", "'lots'")


def test_dry_run_answers_at_once_for_any_n(fake):
    # Before: 22-45 s and 2 GB (a slot per sample). The bound is generous; the fix answers in about a second.
    started = time.perf_counter()
    result = run_cli("sample", "hi", "--model", "fake", "--n", HUGE_N, "--allow-large-n", "--dry-run", timeout=120)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert f"{HUGE_N} of {HUGE_N} samples to draw (0 cached) in {HUGE_N} requests" in result.stdout
    assert elapsed < 15, elapsed


def test_dry_run_of_a_large_n_counts_what_is_stored(fake, tmp_path):
    from workbench.registry import load_registry
    from workbench.sampler import Sampler

    with Sampler(store=tmp_path / "s.sqlite", registry=load_registry(), progress=False) as sampler:
        sampler.sample("fake", "hi", 3, max_tokens=4)
        estimate = sampler.estimate("fake", "hi", 10**7, max_tokens=4)
    assert (estimate.n, estimate.cached, estimate.requests) == (10**7, 3, 10**7 - 3)


def test_the_sampler_refuses_an_absurd_n_and_seed(fake, tmp_path):
    from workbench.config import MAX_SEED
    from workbench.registry import load_registry
    from workbench.sampler import Sampler

    with Sampler(store=tmp_path / "s.sqlite", registry=load_registry(), progress=False) as sampler:
        with pytest.raises(WorkbenchError, match="at most"):
            sampler.plan("fake", "hi", 10**12)
        with pytest.raises(WorkbenchError, match="9223372036854775807"):
            sampler.plan("fake", "hi", 1, seed=int(HUGE_SEED))
        with pytest.raises(WorkbenchError, match="seed"):
            sampler.plan("fake", "hi", 1, seed=-1)
        assert sampler.plan("fake", "hi", 1, seed=MAX_SEED).seed == MAX_SEED


@pytest.mark.parametrize("flag, value", [("--temperature", "inf"), ("--temperature", "nan"),
                                         ("--temperature", "-inf"), ("--top-p", "nan")])
def test_sampling_numbers_must_be_finite(capsys, fake, flag, value):
    code, out, err = run_main(capsys, "sample", "hi", "--model", "fake", "--n", "2", f"{flag}={value}", "--quiet")
    assert_one_line_user_error(code, out, err, flag, "finite")
    assert not fake.state.requests
    code, out, _ = run_main(capsys, "runs", "list")
    assert code == 0 and "fake" not in out  # no run row holds an Infinity to export


def test_the_sampling_config_refuses_non_finite_and_absurd_values():
    from workbench.config import MAX_TEMPERATURE, make_config

    for field in ("temperature", "top_p", "min_p", "repetition_penalty"):
        for value in (math.inf, -math.inf, math.nan):
            with pytest.raises(ConfigError, match=field):
                make_config(**{field: value})
    with pytest.raises(ConfigError, match="temperature"):
        make_config(temperature=MAX_TEMPERATURE + 1)
    assert make_config(temperature=MAX_TEMPERATURE).temperature == MAX_TEMPERATURE


@pytest.mark.parametrize("value", [HUGE_SEED, "-1", "1.5"])
def test_seed_is_checked_at_the_flag(capsys, fake, value):
    code, out, err = run_main(capsys, "sample", "hi", "--model", "fake", "--n", "2", "--seed", value, "--quiet")
    assert_one_line_user_error(code, out, err, "--seed", "9223372036854775807")
    assert not fake.state.requests


@pytest.mark.parametrize("args", [("sample", "hi", "--model", "fake", "--batch-size", "0"),
                                  ("sample", "hi", "--model", "fake", "--n", "-3"),
                                  ("demo", "--n", "0")])
def test_counts_must_be_positive(capsys, fake, args):
    code, out, err = run_main(capsys, *args)
    flag = next(a for a in args if a.startswith("--") and a != "--model")
    assert_one_line_user_error(code, out, err, flag, "at least 1")


def test_exports_contain_no_non_json_numbers(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from workbench.cli.common import write_json
    from workbench.plots import export_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    record = {"config": {"temperature": math.inf}, "values": [math.nan, -math.inf, 1.5], "run_id": "r1"}
    paths = export_figure(fig, tmp_path / "fig", record, formats=("svg",))
    plt.close(fig)
    sidecar = strict_json(paths[-1].read_text())
    assert sidecar["config"]["temperature"] is None and sidecar["values"] == [None, None, 1.5]
    assert "Infinity" not in paths[0].read_text() and "NaN" not in paths[0].read_text()
    write_json(tmp_path / "tree.json", {"logprob": -math.inf, "nested": [{"p": math.nan}], "token": "x"})
    assert strict_json((tmp_path / "tree.json").read_text()) == {"logprob": None, "nested": [{"p": None}],
                                                                 "token": "x"}


# -- the registry -------------------------------------------------------------------------------

REGISTRY_MISTAKES = {
    # name: (models.yaml text, what the line must say besides the file)
    "models-as-a-list": ("models:\n  - name: fake\n    backend: openai\n", ("'models' must be a mapping",)),
    "pair-as-a-string": ("pairs:\n  mine: \"gemma-3-270m,smollm2-135m-instruct\"\n", ("pair 'mine'", "base")),
    "pairs-as-a-list": ("pairs:\n  - a\n", ("'pairs' must be a mapping",)),
    "templates-as-a-list": ("transcript_templates:\n  - a\n", ("'transcript_templates' must be a mapping",)),
    "model-as-null": ("models:\n  x: null\n", ("model 'x'",)),
    "unknown-field": ("models:\n  gemma-3-270m: {colour: red}\n", ("model 'gemma-3-270m'", "colour")),
    "unknown-top-level-key": ("modles: {}\n", ("modles",)),
    "top-level-list": ("- a\n- b\n", ("mapping",)),
    "yaml-syntax": ("models:\n  x: {backend: hf\n", ("line 3",)),
}


@pytest.mark.parametrize("case", list(REGISTRY_MISTAKES))
def test_registry_mistakes_are_one_line_naming_the_file_and_entry(capsys, home, case):
    text, needles = REGISTRY_MISTAKES[case]
    (home / "models.yaml").write_text(text)
    code, out, err = run_main(capsys, "models", "list", "--json")
    assert_one_line_user_error(code, out, err, str(home / "models.yaml"), *needles)


def test_a_registry_that_is_not_text_is_one_line(capsys, home):
    (home / "models.yaml").write_bytes(b"\xff\xfe models")
    code, out, err = run_main(capsys, "models", "list", "--json")
    assert_one_line_user_error(code, out, err, str(home / "models.yaml"), "UTF-8")


@pytest.mark.parametrize("folder", ["/etc", "empty", "config-only", "missing"])
def test_a_source_path_without_a_checkpoint_says_what_it_needs(capsys, home, tmp_path, folder):
    path = Path(folder) if folder.startswith("/") else tmp_path / folder
    if folder in ("empty", "config-only"):
        path.mkdir()
    if folder == "config-only":
        (path / "config.json").write_text("{}")
    (home / "models.yaml").write_text(f"models:\n  mine: {{backend: hf, kind: base, family: x, "
                                      f"source: {{path: '{path}'}}}}\n")
    code, out, err = run_main(capsys, "sample", "hi", "--model", "mine", "--n", "1", "--quiet")
    assert_one_line_user_error(code, out, err, "model 'mine'", f"source.path {path}", "config.json",
                               str(home / "models.yaml"))
    code, out, _ = run_main(capsys, "runs", "list")
    assert code == 0 and "mine" not in out  # refused before a run row was written


CHAT_TEMPLATES = {
    # the sandbox refuses it (SecurityError), it does not parse, it reads what is not there, it fails in Python
    "security": "{{ ''.__class__.__mro__ }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "syntax": "{% for m in messages %}{{ m.content ",
    "undefined": "{{ messages[0].content.nope.deeper }}",
    "type": "{{ messages + 1 }}",
}


@pytest.mark.parametrize("case", list(CHAT_TEMPLATES))
def test_a_chat_template_that_fails_names_the_model_and_field(capsys, home, embedded_models, case):
    template = CHAT_TEMPLATES[case]
    (home / "models.yaml").write_text(json.dumps({"models": {"smollm2-135m-instruct": {"chat_template": template}}}))
    code, out, err = run_main(capsys, "sample", "hi", "--chat", "--model", "smollm2-135m-instruct", "--n", "1",
                              "--quiet")
    assert_one_line_user_error(code, out, err, "'smollm2-135m-instruct'", "chat_template",
                               str(home / "models.yaml"))


# -- one line, never a traceback ----------------------------------------------------------------


def _raise(exc: BaseException):
    def command(args) -> None:
        raise exc
    return command


def test_an_unexpected_error_is_one_line_with_the_traceback_in_a_file(capsys, home, monkeypatch):
    from workbench.cli import models

    secret = "sk-" + "A1b2C3d4" * 4
    monkeypatch.setattr(models, "cmd_models_list", _raise(RuntimeError(f"boom\nsecond line {secret}")))
    code, out, err = run_main(capsys, "models", "list")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("workbench: internal error: RuntimeError: boom")
    assert "rerun the same command with --debug" in err and secret not in err
    logs = list((home / "logs").glob("error-*.txt"))
    assert len(logs) == 1 and str(logs[0]) in err
    written = logs[0].read_text()
    assert "Traceback (most recent call last)" in written and "RuntimeError" in written and secret not in written


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback(capsys, home, monkeypatch, how):
    from workbench.cli import models

    monkeypatch.setattr(models, "cmd_models_list", _raise(RuntimeError("boom")))
    if how == "environment":
        monkeypatch.setenv("WORKBENCH_DEBUG", "1")
    code, _, err = run_main(capsys, *(["--debug"] if how == "flag" else []), "models", "list")
    assert code == 1 and "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
    assert not (home / "logs").exists()


@pytest.mark.parametrize("exc, needles", [
    (PermissionError(13, "Permission denied", "/some/figure.png"), ("/some/figure.png", "Permission denied")),
    (IsADirectoryError(21, "Is a directory", "/some/dir"), ("/some/dir",)),
])
def test_an_os_error_on_a_path_is_a_user_error(capsys, home, monkeypatch, exc, needles):
    from workbench.cli import models

    monkeypatch.setattr(models, "cmd_models_list", _raise(exc))
    code, out, err = run_main(capsys, "models", "list")
    assert_one_line_user_error(code, out, err, *needles)


def test_a_validation_error_that_escapes_is_a_user_error(capsys, home, monkeypatch):
    from pydantic import BaseModel, ValidationError

    from workbench.cli import models

    class Thing(BaseModel):
        count: int

    with pytest.raises(ValidationError) as caught:
        Thing(count="many")
    monkeypatch.setattr(models, "cmd_models_list", _raise(caught.value))
    code, out, err = run_main(capsys, "models", "list")
    assert_one_line_user_error(code, out, err, "count", "many")


@pytest.mark.parametrize("error, user_error", [
    (sqlite3.DatabaseError("file is not a database"), True),
    (sqlite3.OperationalError("database is locked"), True),
    (sqlite3.OperationalError("no such column: x"), False),  # our SQL is wrong: a bug
])
def test_a_store_sqlite_cannot_use_is_a_user_error_and_a_sql_bug_is_not(capsys, home, monkeypatch, error,
                                                                        user_error):
    from workbench.cli import models

    monkeypatch.setattr(models, "cmd_models_list", _raise(error))
    code, out, err = run_main(capsys, "models", "list")
    if user_error:
        assert_one_line_user_error(code, out, err, "the run store", str(error))
    else:
        assert code == 1 and err.startswith("workbench: internal error: OperationalError: no such column")


def test_a_sweep_refuses_a_temperature_that_is_not_one(capsys, fake, home):
    entry = {"backend": "openai", "kind": "base", "family": "fake", "api_model": "fake-model",
             "base_url": fake.base_url, "api_dialect": "llama.cpp"}
    (home / "models.yaml").write_text(json.dumps({"models": {"fake": entry, "fake2": entry}}))
    code, out, err = run_main(capsys, "figure", "sweep", "hi", "--models", "fake,fake2", "--temperatures",
                              "0.5,inf", "--sampled", "--n", "2")
    assert_one_line_user_error(code, out, err, "--temperatures", "inf")
    assert not fake.state.requests


def test_ctrl_c_still_gives_130_and_says_samples_are_kept(capsys, home, monkeypatch):
    from workbench.cli import models

    monkeypatch.setattr(models, "cmd_models_list", _raise(KeyboardInterrupt()))
    code, _, err = run_main(capsys, "models", "list")
    assert code == 130 and "every finished sample is stored" in err and err.count("\n") == 1


def test_argparse_mistakes_are_one_line_naming_the_flag(capsys, fake):
    code, out, err = run_main(capsys, "sample", "hi", "--model", "fake", "--n", "abc")
    assert_one_line_user_error(code, out, err, "argument --n", "'abc'", "workbench sample --help")
    code, out, err = run_main(capsys, "sample", "hi")
    assert_one_line_user_error(code, out, err, "--model")


def test_the_installed_command_is_one_line_for_a_store_it_cannot_open(home, tmp_path):
    (tmp_path / "file").write_text("x")  # a store path below a file: SQLite cannot create it
    result = run_cli("runs", "list", env={"WORKBENCH_STORE": str(tmp_path / "file" / "store.sqlite")})
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# -- the review of #15: bounds at the flag, --debug anywhere, dry runs, folders ---------------------
# Findings 7, 10, 11, 12 and 14, with the reviewer's exact inputs.


@pytest.mark.parametrize("flag, value, allowed", [
    ("--top-p", "0", "must be above 0 and at most 1, got 0"),
    ("--top-p", "1.5", "must be above 0 and at most 1, got 1.5"),
    ("--temperature", "-1", "must be from 0 to 100, got -1"),
    ("--temperature", "101", "must be from 0 to 100, got 101"),
    ("--top-k", "-1", "must be 0 (off) or more, got -1"),
    ("--max-tokens", "99999999999999999999", "must be from 1 to 32768, got 99999999999999999999"),
    ("--max-tokens", "0", "must be from 1 to 32768, got 0"),
])
def test_sampling_flags_are_checked_at_the_flag_in_its_own_words(capsys, fake, flag, value, allowed):
    code, out, err = run_main(capsys, "sample", "hi", "--model", "fake", "--n", "1", flag, value, "--quiet")
    assert_one_line_user_error(code, out, err, f"argument {flag}: {allowed}")
    assert "Input should be" not in err and not fake.state.requests


def test_the_sampling_config_says_what_is_allowed_in_plain_words():
    from workbench.config import make_config

    with pytest.raises(ConfigError, match=r"top_p must be above 0 and at most 1 \(got 0\)"):
        make_config(top_p=0)
    with pytest.raises(ConfigError, match=r"max_tokens must be from 1 to 32768 \(got 99999\)"):
        make_config(max_tokens=99999)


@pytest.mark.parametrize("where", ["end", "middle", "start"])
def test_debug_is_taken_anywhere_on_the_command_line(capsys, home, monkeypatch, where):
    from workbench.cli import models

    monkeypatch.setattr(models, "cmd_models_list", _raise(RuntimeError("boom")))
    args = {"end": ["models", "list", "--debug"], "middle": ["models", "--debug", "list"],
            "start": ["--debug", "models", "list"]}[where]
    code, _, err = run_main(capsys, *args)
    assert code == 1 and "Traceback (most recent call last)" in err and "RuntimeError: boom" in err


def test_the_internal_error_line_says_debug_goes_anywhere(capsys, home, monkeypatch):
    from workbench.cli import models

    monkeypatch.setattr(models, "cmd_models_list", _raise(RuntimeError("boom")))
    code, _, err = run_main(capsys, "models", "list")
    assert code == 1 and "rerun the same command with --debug" in err


def test_a_dry_run_answers_for_any_n_without_allow_large_n(capsys, fake):
    # Before: rc 2, "--n 10000000 is above the maximum of 100000 samples per model; pass --allow-large-n".
    code, out, err = run_main(capsys, "sample", "hi", "--model", "fake", "--n", HUGE_N, "--dry-run")
    assert code == 0, err
    assert f"{HUGE_N} of {HUGE_N} samples to draw" in out and not fake.state.requests


def test_a_prompt_file_that_is_a_folder_says_so(capsys, fake):
    code, out, err = run_main(capsys, "sample", "@/etc", "--model", "fake", "--n", "1", "--quiet")
    assert_one_line_user_error(code, out, err, "/etc is a folder, not a file")
    assert "does not exist" not in err


def test_a_flag_is_never_taken_as_an_abbreviation_of_another(capsys, fake):
    # Before: `tree --model` was read as `--models`, `sample --temp` as `--temperature`.
    code, out, err = run_main(capsys, "tree", "Hi", "--model", "fake", "--depth", "1")
    assert_one_line_user_error(code, out, err, "unrecognized arguments: --model")
    code, out, err = run_main(capsys, "sample", "hi", "--model", "fake", "--n", "1", "--temp", "0.5")
    assert_one_line_user_error(code, out, err, "unrecognized arguments: --temp")
    assert not fake.state.requests


@pytest.mark.parametrize("flag, value, needles", [
    ("--depth", "99999999", ("argument --depth: must be from 1 to 1000 levels, got 99999999", "--chunk-tokens")),
    ("--k", "1000", ("argument --k: must be from 1 to 100, got 1000", "--beam")),
    ("--chunks", "99999999", ("argument --chunks: must be from 1 to 1000, got 99999999", "workbench sample")),
])
def test_tree_sizes_have_a_maximum_that_says_what_to_do(capsys, fake, flag, value, needles):
    # Before: --depth 99999999 ran silently until killed.
    started = time.perf_counter()
    extra = ("--chunk-tokens", "2") if flag == "--chunks" else ()
    code, out, err = run_main(capsys, "tree", "Hi", "--models", "fake", flag, value, *extra)
    assert_one_line_user_error(code, out, err, *needles)
    assert time.perf_counter() - started < 30 and not fake.state.requests


def test_a_tree_too_large_to_grow_says_how_large_and_needs_an_explicit_flag(capsys, fake, monkeypatch):
    # Before: --k 3 --depth 30 set out to expand 3^30 nodes.
    code, out, err = run_main(capsys, "tree", "Hi", "--models", "fake", "--k", "3", "--depth", "30")
    assert_one_line_user_error(code, out, err, "up to 308836698141972 nodes", "above the maximum of 20000",
                               "--beam", "--allow-large-tree", "WORKBENCH_MAX_TREE_NODES")
    assert not fake.state.requests
    code, out, err = run_main(capsys, "tree", "Hi", "--models", "fake", "--k", "3", "--depth", "30",
                              "--beam", "2", "--dry-run")
    assert code == 0 and "up to 177 nodes" in out, err  # 3 + 29 levels of 2 beams x 3 children
    monkeypatch.setenv("WORKBENCH_MAX_TREE_NODES", "5")
    code, out, err = run_main(capsys, "tree", "Hi", "--models", "fake", "--k", "2", "--depth", "2")
    assert_one_line_user_error(code, out, err, "up to 6 nodes", "above the maximum of 5")
    code, out, err = run_main(capsys, "tree", "Hi", "--models", "fake", "--k", "2", "--depth", "2", "--dry-run")
    assert code == 0 and "up to 6 nodes" in out and "above the maximum of 5" in out, err  # a dry run answers
    assert not fake.state.requests
    code, out, err = run_main(capsys, "tree", "Hi", "--models", "fake", "--k", "2", "--depth", "2",
                              "--allow-large-tree", "--quiet")
    assert code == 0 and "nodes; print it again with `workbench tree --show" in out, err
    assert fake.state.requests
