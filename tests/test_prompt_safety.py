"""A colleague's prompt folder is safe to load (issue 15, failure 3).

Every case of the issue is here with its exact input: nested range(99999) loops, 'A'*400000000,
a variant grid of 10^8, a YAML alias bomb inside `variables`, one malformed file next to good ones,
and a symlink to a file outside the folder. Cases that would exhaust memory on a regression run in
a child process with an address-space limit, so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import os
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from tests.conftest import REPO, run_limited
from workbench.errors import ConfigError, WorkbenchError
from workbench.prompts import PromptLibraryError, load_library, validate_paths
from workbench.prompts.sandbox import render_template

HEADER = "name: {name}\ndescription: d\nversion: 1\nprompts:\n"

# The exact inputs of the issue.
NESTED_LOOPS = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}done"
HUGE_REPEAT = "{{ 'A'*400000000 }}"
GRID_10_TO_8 = "{" + ", ".join(f"g{i}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" for i in range(8)) + "}"
ALIAS_BOMB = """\
    variables:
      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
      i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""
SHADOW_LIKE = "root:*:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n"  # what /etc/shadow printed


def collection(folder: Path, name: str, prompts: str) -> Path:
    """Write folder/name.yaml: a collection called `name` with the given prompts block."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(HEADER.format(name=name) + textwrap.dedent(prompts))
    return path


def completion(pid: str, text: str, extra: str = "") -> str:
    """A prompts-list entry for a completion prompt (text quoted for YAML)."""
    quoted = text.replace("'", "''")
    entry = f"  - id: {pid}\n    kind: completion\n    text: '{quoted}'\n"
    return entry + textwrap.indent(textwrap.dedent(extra), "    ")


def loops_file(folder: Path) -> Path:
    return collection(folder, "loops", completion("nested", NESTED_LOOPS))


def repeat_file(folder: Path) -> Path:
    return collection(folder, "repeat", completion("big", HUGE_REPEAT))


def grid_file(folder: Path) -> Path:
    slots = " ".join(f"{{{{ g{i} }}}}" for i in range(8))
    return collection(folder, "grid", completion("huge-grid", slots, f"grid: {GRID_10_TO_8}\n"))


def alias_file(folder: Path) -> Path:
    return collection(folder, "bomb", completion("lol", "{{ i }}") + ALIAS_BOMB)


def malformed_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "broken.yaml"
    path.write_text(HEADER.format(name="broken") + "  - id: a\n    text: x: y\n")
    return path


def good_file(folder: Path) -> Path:
    return collection(folder, "good", completion("hello", "Hello {{ who }}", "variables: {who: world}\n"))


def peak_memory_of(action) -> tuple[BaseException | None, int]:
    """(the exception `action` raised, the peak bytes Python allocated meanwhile)."""
    tracemalloc.start()
    try:
        action()
    except BaseException as exc:  # noqa: BLE001 (returned to the test)
        error = exc
    else:
        error = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return error, peak


# -- templates render with limits on time and output size --------------------------------------


@pytest.mark.timeout(90)
def test_nested_range_loops_stop_at_the_time_limit(tmp_path):
    path = loops_file(tmp_path)
    started = time.monotonic()
    count, problems = validate_paths([path])
    assert time.monotonic() - started < 30  # the bug: runs forever
    [problem] = problems
    assert str(path) in problem and "'nested'" in problem
    assert "2 s" in problem and "WORKBENCH_RENDER_SECONDS" in problem and "\n" not in problem


@pytest.mark.timeout(90)
def test_the_time_limit_holds_in_a_worker_thread():
    """Panels render in worker threads, where signals do not reach: the limit lives in the sandbox."""
    outcome: list[BaseException | str] = []

    def render() -> None:
        try:
            outcome.append(render_template(NESTED_LOOPS, {}, "panel"))
        except BaseException as exc:  # noqa: BLE001 (checked below)
            outcome.append(exc)

    worker = threading.Thread(target=render, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive() and len(outcome) == 1
    assert isinstance(outcome[0], WorkbenchError) and "time limit" in str(outcome[0])


def test_a_huge_repetition_is_refused_before_it_is_built(tmp_path):
    path = repeat_file(tmp_path)
    error, peak = peak_memory_of(lambda: render_template(HUGE_REPEAT, {}, "repeat/big"))
    assert isinstance(error, WorkbenchError) and "1,000,000 characters" in str(error)
    assert "WORKBENCH_RENDER_MAX_CHARS" in str(error)
    assert peak < 50 * 2**20  # the bug: 1.7 GB
    [problem] = validate_paths([path])[1]
    assert str(path) in problem and "'big'" in problem and "1,000,000 characters" in problem


SIZE_BOMBS = [
    "{{ 'x'.center(999999999) }}",
    "{{ 'x'|center(999999999) }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '%999999999s'|format('x') }}",
    "{{ '{:999999999}'.format('x') }}",
    "{{ '{:{w}}'.format('x', w=999999999) }}",
    "{{ ('a\n' * 1000)|indent(999999) }}",
    "{{ range(99999)|join('A' * 999999) }}",
    "{{ ('A' * 999999).join(['a'] * 99999) }}",
    "{{ ('a' * 999999).replace('a', 'bbbbbbbbbb') }}",
    "{{ 'aaaa'.replace('', 'A' * 999999) }}",
    "{{ ('\t' * 999999).expandtabs(999999) }}",
    "{{ (1).to_bytes(999999999, 'big') }}",
    "{{ 9 ** (9 ** 9) }}",
    "{{ [[1] * 999999] * 999999 }}",
    "{{ lipsum(999999) }}",
    "{{ ('A' * 999999) ~ ('A' * 999999) }}",
    "{% set ns = namespace(s='A') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s='A') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}{% set ns = namespace(s='A') %}"
    "{% for i in range(64) %}{% set ns.s = twice(ns.s) %}{% endfor %}{{ ns.s|length }}",
    "{% set big %}{% for i in range(99999) %}{{ 'A' * 99999 }}{% endfor %}{% endset %}{{ big|length }}",
    "{{ range(99999)|map('string')|map('center', 99999)|join }}",
    "{% set a = ['lol'] * 9 %}{% set b = [a] * 9 %}{% set c = [b] * 9 %}{% set d = [c] * 9 %}{% set e = [d] * 9 %}"
    "{% set f = [e] * 9 %}{% set g = [f] * 9 %}{% set h = [g] * 9 %}{{ h }}",
    "{% set a = ['lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol'] %}"
    "{% set b = [a, a, a, a, a, a, a, a, a] %}"
    "{% set c = [b, b, b, b, b, b, b, b, b] %}{% set d = [c, c, c, c, c, c, c, c, c] %}"
    "{% set e = [d, d, d, d, d, d, d, d, d] %}{% set f = [e, e, e, e, e, e, e, e, e] %}"
    "{% set g = [f, f, f, f, f, f, f, f, f] %}{{ g|string|length }}",
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("template", SIZE_BOMBS)
def test_templates_that_would_build_huge_values_are_refused(template):
    started = time.monotonic()
    error, peak = peak_memory_of(lambda: render_template(template, {}, "c/p"))
    assert isinstance(error, WorkbenchError), error
    assert "c/p" in str(error) and "\n" not in str(error)
    assert peak < 200 * 2**20 and time.monotonic() - started < 30


@pytest.mark.timeout(60)
def test_recursion_and_template_errors_are_one_line():
    for template in ["{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}", "{{ 1 // 0 }}", "{{ 10.0 ** 400 }}",
                     "{{ (10 ** 5000)|string }}"]:
        with pytest.raises(WorkbenchError) as info:
            render_template(template, {}, "c/p")
        assert str(info.value).startswith("c/p: ") and "\n" not in str(info.value)


def test_ordinary_templates_still_render():
    template = ("{% for x in items %}{{ loop.index }}. {{ x|upper }}{{ ', ' if not loop.last }}{% endfor %}"
                " | {{ '%5s|%-3d' % ('ab', 7) }} | {{ '{:>6}'.format('r') }} | {{ 'x'.center(5, '*') }}"
                " | {{ [1, 2] * 2 }} | {{ 'ab' ~ 'cd' }} | {{ 2 ** 10 }} | {{ text|wordwrap(5) }}"
                " | {{ range(3)|map('string')|join('-') }} | {{ text|indent(2, true) }}")
    out = render_template(template, {"items": ["a", "b"], "text": "one two three"}, "c/p")
    assert out == ("1. A, 2. B |    ab|7   |      r | **x** | [1, 2, 1, 2] | abcd | 1024 | one\ntwo\nthree"
                   " | 0-1-2 |   one two three")


def test_the_limits_can_be_changed_and_a_bad_setting_is_named(monkeypatch):
    monkeypatch.setenv("WORKBENCH_RENDER_MAX_CHARS", "100")
    with pytest.raises(WorkbenchError, match="100 characters"):
        render_template("{{ 'A' * 101 }}", {}, "c/p")
    assert render_template("{{ 'A' * 100 }}", {}, "c/p") == "A" * 100
    monkeypatch.setenv("WORKBENCH_RENDER_SECONDS", "0.2")
    started = time.monotonic()
    with pytest.raises(WorkbenchError, match=r"0\.2 s"):
        render_template(NESTED_LOOPS, {}, "c/p")
    assert time.monotonic() - started < 10
    monkeypatch.setenv("WORKBENCH_RENDER_SECONDS", "soon")
    with pytest.raises(ConfigError, match="WORKBENCH_RENDER_SECONDS"):
        render_template("x", {}, "c/p")


# -- variant grids and YAML are capped ---------------------------------------------------------


@pytest.mark.timeout(150)
def test_a_variant_grid_of_10_to_the_8_is_refused(tmp_path):
    path = grid_file(tmp_path)
    result, seconds = run_limited(["prompts", "validate", str(path)], {})
    assert result.returncode == 2, result.stderr[-2000:]  # the bug: a MemoryError traceback
    assert "Traceback" not in result.stderr
    [problem] = [line for line in result.stderr.splitlines() if "huge-grid" in line]
    assert str(path) in problem and "100,000,000 variants" in problem and "10,000" in problem
    assert seconds < 60


@pytest.mark.timeout(150)
def test_a_yaml_alias_bomb_in_variables_is_refused(tmp_path):
    path = alias_file(tmp_path)
    result, seconds = run_limited(["prompts", "validate", str(path)], {})
    assert result.returncode == 2, result.stderr[-2000:]  # the bug: 3.5 GB
    assert "Traceback" not in result.stderr
    [problem] = [line for line in result.stderr.splitlines() if "alias" in line]
    assert f"{path}:" in problem and "100,000" in problem
    assert seconds < 60


def test_a_file_over_the_size_cap_is_not_parsed(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PROMPT_FILE_MAX_BYTES", "1000")
    path = collection(tmp_path, "large", completion("p", "x" * 2000))
    [problem] = validate_paths([path])[1]
    assert str(path) in problem and "1,000 bytes" in problem and "WORKBENCH_PROMPT_FILE_MAX_BYTES" in problem


# -- one bad file affects only its own collection ----------------------------------------------


def bad_folder(folder: Path) -> Path:
    """A colleague's folder: every bomb of the issue, a malformed file, and one good collection."""
    for make in (loops_file, repeat_file, grid_file, alias_file, malformed_file, good_file):
        make(folder)
    return folder


@pytest.mark.timeout(120)
def test_a_broken_folder_leaves_other_collections_usable(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PROMPTS", str(bad_folder(tmp_path / "theirs")))
    started = time.monotonic()
    library = load_library()  # the bug: PromptLibraryError (or a stall) for the whole library
    assert library.get("mode-collapse/coin-flip").ref == "mode-collapse/coin-flip"
    assert "good/hello" in library and library.get("good/hello").spec.variables == {"who": "world"}
    assert time.monotonic() - started < 20  # nothing of the bombs was loaded
    with pytest.raises(PromptLibraryError) as info:
        library.get("broken/a")
    assert "broken.yaml:6" in str(info.value) and "YAML syntax error" in str(info.value)
    with pytest.raises(PromptLibraryError, match="alias"):
        library.get("bomb/lol")


@pytest.mark.timeout(120)
def test_only_the_collection_asked_for_is_loaded(tmp_path, monkeypatch):
    import workbench.prompts.loader as loader

    loaded: list[str] = []
    original = loader.load_collection

    def spy(path, *args, **kwargs):
        loaded.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(loader, "load_collection", spy)
    monkeypatch.setenv("WORKBENCH_PROMPTS", str(bad_folder(tmp_path / "theirs")))
    library = load_library()
    assert "good/hello" in library and library.get("good/hello")
    assert loaded == ["good.yaml"]
    assert "mode-collapse/coin-flip" in library
    assert loaded == ["good.yaml", "mode-collapse.yaml"]


@pytest.mark.timeout(200)
def test_the_cli_lists_good_collections_and_names_each_broken_file(tmp_path):
    folder = bad_folder(tmp_path / "theirs")
    env = {"WORKBENCH_PROMPTS": str(folder)}
    shown, _ = run_limited(["prompts", "show", "mode-collapse/coin-flip"], env)
    assert shown.returncode == 0, shown.stderr  # the bug: exit 2, every problem of the folder
    listed, seconds = run_limited(["prompts", "list"], env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "mode-collapse/coin-flip" in listed.stdout and "good/hello" in listed.stdout
    broken = [line for line in listed.stderr.splitlines() if line.startswith("broken collection")]
    named = {name for name in ("loops", "repeat", "grid", "bomb", "broken") if any(f"{name}.yaml" in b for b in broken)}
    assert named == {"loops", "repeat", "grid", "bomb", "broken"} and len(broken) == 5
    assert "Traceback" not in listed.stderr and seconds < 90
    asked, _ = run_limited(["prompts", "show", "bomb/lol"], env)
    assert asked.returncode == 2 and "bomb.yaml" in asked.stderr and "Traceback" not in asked.stderr


def test_a_duplicate_name_keeps_the_first_and_names_the_second(tmp_path, monkeypatch):
    mine = collection(tmp_path / "mine", "mode-collapse", completion("coin-flip", "mine"))
    monkeypatch.setenv("WORKBENCH_PROMPTS", str(mine.parent))
    library = load_library()
    assert library.get("mode-collapse/coin-flip").path.parent == REPO / "prompts"
    assert any(str(mine) in problem and "already used" in problem for problem in library.problems())


# -- symlinks that leave the folder are refused without reading their target ------------------


@pytest.mark.timeout(120)
def test_a_symlink_leaving_the_folder_is_refused_unread(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.yaml"
    secret.write_text(SHADOW_LIKE)
    os.mkfifo(outside / "pipe.yaml")  # opening it for reading would block forever
    folder = tmp_path / "theirs"
    good_file(folder)
    (folder / "leak.yaml").symlink_to(secret)
    (folder / "pipe.yaml").symlink_to(outside / "pipe.yaml")
    (folder / "shadow.yaml").symlink_to("/etc/shadow")
    (folder / "elsewhere").symlink_to(outside, target_is_directory=True)
    (folder / "inside.yaml").symlink_to(folder / "good.yaml")  # stays in the folder: the same file, once
    result, _ = run_limited(["prompts", "validate", str(folder)], {}, timeout=60)
    assert result.returncode == 2
    refused = [line for line in result.stderr.splitlines() if "outside the prompt folder" in line]
    assert len(refused) == 4 and all(str(folder) in line for line in refused)
    assert "root:" not in result.stderr and "daemon:" not in result.stderr  # the bug: /etc/shadow's lines
    monkeypatch.setenv("WORKBENCH_PROMPTS", str(folder))
    library = load_library()
    assert [p.ref for p in library.filter(collection="good")] == ["good/hello"]
    assert sum("outside the prompt folder" in p for p in library.problems()) == 4


def test_unknown_field_names_are_shown_short_and_on_one_line(tmp_path):
    key = "k" * 500 + "\\nsecond line"
    path = collection(tmp_path, "c", completion("p", "x") + f'    "{key}": 1\n')
    path.write_text(path.read_text() + f'"{key}": 2\n')
    problems = validate_paths([path])[1]
    assert len(problems) == 2 and all("unknown field" in problem for problem in problems)
    assert not any("k" * 60 in problem or "second line" in problem or "\n" in problem for problem in problems)


def test_a_symlink_refusal_says_to_copy_into_the_prompt_folder(tmp_path):
    outside = tmp_path / "outside"
    good_file(outside)
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "elsewhere").symlink_to(outside, target_is_directory=True)
    (folder / "leak.yaml").symlink_to(outside / "good.yaml")
    problems = sorted(validate_paths([folder])[1])
    assert len(problems) == 2  # the bug: "copy the folder into the folder if you trust it"
    assert "copy the folder into the prompt folder if you trust it" in problems[0]
    assert "copy the file into the prompt folder if you trust it" in problems[1]


# -- the registry's models.yaml is read with the same caps (review of #15, findings 2 and 13) ---------


def registry_home(tmp_path: Path, text: str) -> Path:
    """A WORKBENCH_HOME whose models.yaml is `text`."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text(text)
    return home


def registry_alias_bomb() -> str:
    """The review's case: a fake model whose `tags:` hold a 9-level alias chain (9^9 strings once expanded)."""
    lines = ["models:", "  fake:", "    backend: openai", "    kind: tuned", "    family: fake", "    api_model: fake",
             "    base_url: http://127.0.0.1:9/v1", "    tags:"]
    previous = None
    for anchor in "abcdefghi":
        items = ", ".join(['"lol"'] * 9 if previous is None else [f"*{previous}"] * 9)
        lines.append(f"      - &{anchor} [{items}]")
        previous = anchor
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(150)
def test_a_yaml_alias_bomb_in_the_registry_is_refused(tmp_path):
    home = registry_home(tmp_path, registry_alias_bomb())
    result, seconds = run_limited(["sample", "Hi", "--model", "fake", "--n", "1", "--max-tokens", "3"],
                                  {"WORKBENCH_HOME": str(home)})
    assert result.returncode == 2, result.stderr[-2000:]  # the bug: killed at 60 s, 3.8 GB
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("workbench: error")]
    assert f"{home / 'models.yaml'}:" in line and "alias" in line and "100,000" in line
    assert seconds < 60


def test_a_registry_over_the_size_cap_is_not_parsed(tmp_path):
    from workbench.registry import load_registry

    path = tmp_path / "models.yaml"
    path.write_text("models:\n  fake:\n    description: '" + "x" * 5_000_001 + "'\n")
    with pytest.raises(ConfigError) as info:
        load_registry(user_file=path)
    assert str(path) in str(info.value) and "5,000,000 bytes" in str(info.value) and "\n" not in str(info.value)


def test_a_transcript_template_error_names_the_template_and_its_file(tmp_path):
    from workbench.prompts import render_for_model
    from workbench.registry import load_registry

    path = tmp_path / "models.yaml"
    path.write_text(f"transcript_templates:\n  evil:\n    template: \"{HUGE_REPEAT}\"\n"
                    "models:\n  gemma-3-270m:\n    transcript_template: evil\n")
    registry = load_registry(user_file=path)
    with pytest.raises(ConfigError) as info:
        render_for_model("Hi", registry.get("gemma-3-270m"), registry, chat=True)
    message = str(info.value)  # the bug: "transcript template: the template would build ..."
    assert "transcript template 'evil'" in message and str(path) in message and "render size limit" in message
