"""Issue #15, items 1, 2 and 7: run bundles that cannot poison the cache, rows that cannot break a run,
and a damaged store that is refused, checked and salvaged. The exact inputs of the issue go through
the CLI; the variations run in-process against the fake OpenAI-compatible server."""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.conftest import run_cli
from workbench.config import SamplingConfig, make_config
from workbench.errors import StoreError
from workbench.registry import Registry, load_registry
from workbench.sampler import Sampler, SampleRun
from workbench.store import RunRecord, Store, migrations, skipped_note
from workbench.store import health as health_module
from workbench.store.checks import RowProblem, check_sample, header_hash, row_hash
from workbench.store.keys import config_cache_fields, run_cache_key
from workbench.store.salvage import salvage
from workbench.testing.openai_server import FakeOpenAIServer
from workbench.types import Generation

PROMPT = "The three most common pet names are"
SAMPLE_64 = ("sample", PROMPT, "--model", "fake", "--n", "64", "--max-tokens", "4", "--quiet")


@pytest.fixture
def fake_model():
    """The fake server as model 'fake' in the session home's registry, which the CLI reads."""
    with FakeOpenAIServer() as server:
        path = Path(os.environ["WORKBENCH_HOME"]) / "models.yaml"
        entry = {"backend": "openai", "kind": "base", "family": "fake", "api_model": "fake-model",
                 "base_url": server.base_url, "api_dialect": "llama.cpp", "timeout_s": 2}
        path.write_text(json.dumps({"models": {"fake": entry}}))  # JSON is YAML
        try:
            yield load_registry(path)
        finally:
            path.unlink()


def draw(registry: Registry, store: Path, n: int = 64, prompt: str = PROMPT, **options) -> SampleRun:
    """What `workbench sample PROMPT --model fake --n N --max-tokens 4` draws, in-process."""
    with Sampler(store=store, registry=registry, progress=False) as sampler:
        return sampler.sample("fake", prompt, n=n, max_tokens=options.pop("max_tokens", 4), **options)


def cli(store: Path, *args: str):
    return run_cli(*args, env={"WORKBENCH_STORE": str(store)})


def export_jsonl(store: Path, run_id: str, path: Path) -> list[dict]:
    with Store(store) as s:
        s.export_run(run_id, path, "jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def resign(lines: list[dict]) -> list[dict]:
    """What a forger can do: recompute every content hash after editing (hashes detect damage, not forgery)."""
    lines = json.loads(json.dumps(lines))
    header, samples = lines[0], lines[1:]
    for sample in samples:
        try:
            sample["row_sha256"] = row_hash(check_sample(sample))
        except RowProblem:
            pass  # a row that does not check has no hash to forge
    run = {k: v for k, v in header["run"].items()}
    header.update(n_samples=len(samples), header_sha256=header_hash(run, header["environments"]))
    return lines


def one_error_line(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def stored_counts(store: Path) -> tuple[int, int]:
    with Store(store) as s:
        return (s.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
                s.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])


# -- 1. a forged bundle cannot poison the cache ------------------------------------------------


def test_issue_forged_texts_are_named_and_refused(fake_model, tmp_path):
    genuine = draw(fake_model, tmp_path / "theirs.sqlite")
    lines = export_jsonl(tmp_path / "theirs.sqlite", genuine.run_id, tmp_path / "run.jsonl")
    forged = write_jsonl(tmp_path / "forged.jsonl", [lines[0]] + [{**line, "text": "FORGED"} for line in lines[1:]])
    victim = tmp_path / "mine.sqlite"
    error = one_error_line(cli(victim, "runs", "import", str(forged)))
    assert "forged.jsonl: line 2 (sample 0): was changed after export" in error
    assert stored_counts(victim) == (0, 0)


def test_issue_forged_bundle_with_recomputed_hashes_never_answers_sample(fake_model, tmp_path):
    genuine = draw(fake_model, tmp_path / "theirs.sqlite")
    lines = export_jsonl(tmp_path / "theirs.sqlite", genuine.run_id, tmp_path / "run.jsonl")
    forged = write_jsonl(tmp_path / "forged.jsonl",
                         resign([lines[0]] + [{**line, "text": "FORGED"} for line in lines[1:]]))
    victim = tmp_path / "mine.sqlite"
    imported = cli(victim, "runs", "import", str(forged))
    assert imported.returncode == 0, imported.stderr
    assert "cache key recomputed" in imported.stdout and "untrusted" in imported.stdout
    sampled = cli(victim, *SAMPLE_64)
    assert sampled.returncode == 0, sampled.stderr
    assert "64 samples of fake (64 drawn, 0 from the store)" in sampled.stdout
    assert "FORGED" not in sampled.stdout
    with Store(victim) as s:
        runs = s.runs()
        assert sorted(runs["origin"].str.split(":").str[0]) == ["bundle", "local"]
        imported_id = runs.loc[runs["origin"] != "local", "id"].item()
        assert set(s.samples(imported_id)["text"]) == {"FORGED"}  # still there to read and compare
        local_id = runs.loc[runs["origin"] == "local", "id"].item()
        assert list(s.samples(local_id)["text"]) == genuine.texts


def test_issue_extra_indices_do_not_extend_a_local_run(fake_model, tmp_path):
    attacker = draw(fake_model, tmp_path / "theirs.sqlite")
    lines = export_jsonl(tmp_path / "theirs.sqlite", attacker.run_id, tmp_path / "run.jsonl")
    extra = [lines[0]] + [{**line, "sample_index": line["sample_index"] + 64, "text": "EXTRA"} for line in lines[1:]]
    bundle = write_jsonl(tmp_path / "extra.jsonl", resign(extra))
    victim = tmp_path / "mine.sqlite"
    draw(fake_model, victim)  # the genuine local run, indices 0-63
    assert cli(victim, "runs", "import", str(bundle)).returncode == 0
    sampled = cli(victim, "sample", PROMPT, "--model", "fake", "--n", "128", "--max-tokens", "4", "--quiet")
    assert sampled.returncode == 0, sampled.stderr
    assert "128 samples of fake (64 drawn, 64 from the store)" in sampled.stdout
    assert "EXTRA" not in sampled.stdout
    reference = draw(fake_model, tmp_path / "clean.sqlite", n=128)
    with Store(victim) as s:
        assert list(s.samples(s.local_run(reference_key(s)))["text"]) == reference.texts


def reference_key(store: Store) -> str:
    return store.db.execute("SELECT cache_key FROM runs WHERE origin = 'local'").fetchone()[0]


def test_a_trusted_import_answers_sample(fake_model, tmp_path):
    genuine = draw(fake_model, tmp_path / "theirs.sqlite")
    bundle = tmp_path / "run.parquet"
    with Store(tmp_path / "theirs.sqlite") as s:
        s.export_run(genuine.run_id, bundle)
    mine = tmp_path / "mine.sqlite"
    with Store(mine) as s:
        untrusted = s.import_bundle(bundle)
        assert not untrusted.trusted and untrusted.answering_run_id is None
        trusted = s.import_bundle(bundle, trust=True)  # the same origin: the same run, now trusted
        assert (trusted.run_id, trusted.newly_trusted) == (untrusted.run_id, True)
        assert (trusted.added, trusted.present) == (0, 64)
        with pytest.raises(StoreError, match="needs --trust too"):  # no untrusted rows into a trusted run
            s.import_bundle(bundle)
    again = draw(fake_model, mine, n=70)
    assert (again.run_id, again.drawn) == (untrusted.run_id, 6)  # misses are drawn into the trusted import
    assert again.texts[:64] == genuine.texts


def test_a_local_run_answers_before_a_trusted_import(fake_model, tmp_path):
    genuine = draw(fake_model, tmp_path / "theirs.sqlite", n=8)
    bundle = tmp_path / "run.csv"
    with Store(tmp_path / "theirs.sqlite") as s:
        s.export_run(genuine.run_id, bundle)
    mine = tmp_path / "mine.sqlite"
    local = draw(fake_model, mine, n=4)
    with Store(mine) as s:
        result = s.import_bundle(bundle, trust=True)
    assert result.trusted and result.local_run_id == local.run_id == result.answering_run_id
    assert result.run_id != local.run_id and (result.added, result.present) == (8, 0)
    assert draw(fake_model, mine, n=8).run_id == local.run_id


# -- 2. a tampered row cannot break a run ------------------------------------------------------


def test_issue_a_row_with_bad_json_is_refused_and_nothing_is_written(fake_model, tmp_path):
    genuine = draw(fake_model, tmp_path / "theirs.sqlite")
    lines = export_jsonl(tmp_path / "theirs.sqlite", genuine.run_id, tmp_path / "run.jsonl")
    lines[6]["token_ids"] = "[[[not json"
    victim = tmp_path / "mine.sqlite"
    error = one_error_line(cli(victim, "runs", "import", str(write_jsonl(tmp_path / "bad.jsonl", lines))))
    assert "bad.jsonl: line 7 (sample 5)" in error
    resigned = write_jsonl(tmp_path / "resigned.jsonl", resign(lines))  # the field check catches it too
    with Store(victim) as s, pytest.raises(StoreError) as caught:
        s.import_bundle(resigned)
    assert "line 7 (sample 5): token_ids is not valid JSON: '[[[not json'" in str(caught.value)
    assert stored_counts(victim) == (0, 0)


def _set_row(field, value):
    return lambda lines: lines[6].update({field: value})


def _header_as_list(lines):
    lines[0] = [lines[0]]


def _huge_seed(lines):
    lines[0]["run"]["seed"] = 10**30


@pytest.mark.parametrize(("tamper", "error"), [
    (_set_row("sample_index", "abc"), "line 7: sample_index must be a whole number from 0 to 2147483647, got 'abc'"),
    (_set_row("finish_reason", None), "line 7 (sample 5): finish_reason is missing"),
    (_set_row("finish_reason", "exploded"), "line 7 (sample 5): finish_reason must be one of eos, stop, length"),
    (_set_row("tokens", '["a", 1]'), "line 7 (sample 5): tokens has a wrong entry at position 1"),
    (_set_row("sample_index", 2**40), "line 7: sample_index must be a whole number"),
    (_header_as_list, "line 1: the first line must be the bundle header"),
    (_huge_seed, "header run field: seed must be a whole number from 0 to 2^63-1"),
], ids=["index-abc", "finish-null", "finish-unknown", "tokens-int", "index-huge", "header-list", "seed-1e30"])
def test_issue_bad_rows_are_one_line_errors_naming_the_field(fake_model, tmp_path, tamper, error):
    genuine = draw(fake_model, tmp_path / "theirs.sqlite", n=8)
    lines = export_jsonl(tmp_path / "theirs.sqlite", genuine.run_id, tmp_path / "run.jsonl")
    tamper(lines)
    if isinstance(lines[0], dict):
        lines = resign(lines)  # the field check, not the hash, must catch it
    mine = tmp_path / "mine.sqlite"
    with Store(mine) as s, pytest.raises(StoreError) as caught:
        s.import_bundle(write_jsonl(tmp_path / "bad.jsonl", lines))
    assert error in str(caught.value) and "\n" not in str(caught.value)
    assert stored_counts(mine) == (0, 0)


def test_a_bad_last_row_leaves_nothing_behind(fake_model, tmp_path):
    genuine = draw(fake_model, tmp_path / "theirs.sqlite", n=8)
    lines = export_jsonl(tmp_path / "theirs.sqlite", genuine.run_id, tmp_path / "run.jsonl")
    lines[-1]["environment_id"] = "not-in-the-header"
    mine = tmp_path / "mine.sqlite"
    with Store(mine) as s, pytest.raises(StoreError, match="line 9 .*environment_id 'not-in-the-header'"):
        s.import_bundle(write_jsonl(tmp_path / "bad.jsonl", resign(lines)))
    with Store(mine) as s:
        assert s.db.execute("SELECT COUNT(*) FROM environments").fetchone()[0] == 0
    assert stored_counts(mine) == (0, 0)


def test_an_edited_config_fails_the_cache_key_and_a_cut_file_the_row_count(fake_model, tmp_path):
    genuine = draw(fake_model, tmp_path / "theirs.sqlite", n=8)
    lines = export_jsonl(tmp_path / "theirs.sqlite", genuine.run_id, tmp_path / "run.jsonl")
    edited = json.loads(json.dumps(lines))
    edited[0]["run"]["config"]["temperature"] = 0.5
    with Store(tmp_path / "mine.sqlite") as s:
        with pytest.raises(StoreError, match="cache_key does not match"):
            s.import_bundle(write_jsonl(tmp_path / "edited.jsonl", resign(edited)))
        with pytest.raises(StoreError, match="header: was changed after export"):
            s.import_bundle(write_jsonl(tmp_path / "edited.jsonl", edited[:1] + lines[1:]))
        with pytest.raises(StoreError, match="says 8 samples but the file has 7"):
            s.import_bundle(write_jsonl(tmp_path / "cut.jsonl", lines[:-1]))


def test_an_old_bundle_without_hashes_imports_with_a_note(fake_model, tmp_path):
    genuine = draw(fake_model, tmp_path / "theirs.sqlite", n=4)
    lines = export_jsonl(tmp_path / "theirs.sqlite", genuine.run_id, tmp_path / "run.jsonl")
    header = {k: v for k, v in lines[0].items() if k not in ("header_sha256", "n_samples", "exported_from")}
    old = [{**header, "format": "workbench-run-bundle/1"}]
    old += [{k: v for k, v in line.items() if k != "row_sha256"} | {"id": "x", "run_id": "y"} for line in lines[1:]]
    with Store(tmp_path / "mine.sqlite") as s:
        result = s.import_bundle(write_jsonl(tmp_path / "old.jsonl", old))
        assert result.added == 4 and "no content hashes" in "; ".join(result.verified)
        assert list(s.samples(result.run_id)["text"]) == genuine.texts


def test_reading_skips_bad_rows_and_sampling_draws_them_again(fake_model, tmp_path):
    store = tmp_path / "s.sqlite"
    first = draw(fake_model, store, n=8)
    with Store(store) as s:  # what an older version's import or a hand edit could leave behind
        s.db.execute("UPDATE samples SET token_ids = '[[[not json' WHERE run_id = ? AND sample_index = 3",
                     (first.run_id,))
        s.db.execute("UPDATE samples SET completion_tokens = 'many' WHERE run_id = ? AND sample_index = 5",
                     (first.run_id,))
        frame = s.samples(first.run_id)
        assert list(frame["sample_index"]) == [0, 1, 2, 4, 6, 7]
        assert [r["sample_index"] for r in frame.attrs["skipped_rows"]] == [3, 5]
        note = skipped_note(frame)
        assert "skipped 2 unreadable rows" in note and "token_ids is not valid JSON" in note
    shown = cli(store, "runs", "show", first.run_id)
    assert shown.returncode == 0, shown.stderr
    assert "skipped 2 unreadable rows" in shown.stdout
    checked = cli(store, "runs", "check")
    assert checked.returncode == 2 and "2 unreadable sample rows" in checked.stdout
    again = draw(fake_model, store, n=8)
    assert again.drawn == 2 and again.texts == first.texts
    with Store(store) as s:
        assert s.samples(first.run_id).attrs["skipped_rows"] == []


def test_exports_never_contain_non_json_numbers(tmp_path):
    record = RunRecord(cache_key="", model="m", model_identity={"backend": "hf"}, backend="hf",
                       input_mode="completion", template="raw", config=make_config().model_dump(mode="json"), seed=0,
                       input_text="Once")
    record.cache_key = run_cache_key(asdict(record))
    with Store(tmp_path / "a.sqlite") as s:
        run_id = s.ensure_run(record)
        s.add_generations(run_id, [Generation(index=0, text="x", token_ids=[1], tokens=["x"],
                                              token_logprobs=[-math.inf], finish_reason="length",
                                              latency_s=math.inf, raw={"score": math.nan})], None)
        for fmt in ("jsonl", "csv", "parquet"):
            path = s.export_run(run_id, tmp_path / f"run.{fmt}")
            text = path.read_text(errors="replace") if fmt == "jsonl" else Path(f"{path}.run.json").read_text() \
                if fmt == "csv" else ""
            for word in ("NaN", "Infinity"):
                assert word not in text
            with Store(tmp_path / f"b-{fmt}.sqlite") as other:
                row = other.samples(other.import_bundle(path).run_id).iloc[0]
                assert row["token_logprobs"] == [None] and row["raw"] == {"score": None}
                assert row["latency_s"] is None or math.isnan(row["latency_s"])


# -- cache keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"chat": True}, {"temperature": 0.0, "stop": ["\n", "."]},
                                     {"seed": 7, "top_p": 0.9, "top_k": 5}])
def test_a_stored_run_gives_back_its_cache_key(fake_model, tmp_path, options):
    run = draw(fake_model, tmp_path / "s.sqlite", n=1, **options)
    with Store(tmp_path / "s.sqlite") as s:
        stored = s.run(run.run_id)
    assert run_cache_key(stored) == stored["cache_key"]
    if options.get("chat"):
        assert stored["template"].startswith("transcript:") and stored["config"]["stop"]  # extra stops included


def test_a_chat_run_gives_back_its_cache_key(tmp_path):
    with FakeOpenAIServer() as server:
        path = tmp_path / "models.yaml"
        path.write_text(json.dumps({"models": {"fake": {
            "backend": "openai", "kind": "tuned", "family": "fake", "api_model": "fake-model",
            "base_url": server.base_url, "api_dialect": "llama.cpp", "timeout_s": 2}}}))
        run = draw(load_registry(path), tmp_path / "s.sqlite", n=1, chat=True)
    with Store(tmp_path / "s.sqlite") as s:
        stored = s.run(run.run_id)
    assert stored["input_messages"] and run_cache_key(stored) == stored["cache_key"]


@pytest.mark.parametrize("fields", [{}, {"temperature": 0.0, "top_k": 3}, {"stop": ["b", "a", "b"]},
                                    {"top_logprobs": 2, "min_p": 0.1}])
def test_stored_config_normalises_like_sampling_config(fields):
    config = SamplingConfig(**fields)
    assert config_cache_fields(config.model_dump(mode="json")) == config.cache_fields()


# -- migration -------------------------------------------------------------------------------


def test_an_old_store_with_data_migrates_keeping_ids(tmp_path, monkeypatch):
    import workbench.store.database as database

    path = tmp_path / "old.sqlite"
    old = [m for m in migrations.MIGRATIONS if m.__name__ < "m004"]
    monkeypatch.setattr(database, "MIGRATIONS", old)
    with Store(path) as s:
        assert "origin" not in [r[1] for r in s.db.execute("PRAGMA table_info(runs)")]
        s.db.execute("INSERT INTO runs (id, cache_key, created_at, model, model_identity, backend, input_mode, "
                     "template, config, seed) VALUES ('R1', 'k', 't', 'm', '{}', 'hf', 'completion', 'raw', '{}', 0)")
        s.add_generations("R1", [Generation(index=i, text=f"t{i}", token_ids=None, tokens=None, token_logprobs=None,
                                            finish_reason="eos") for i in range(3)], None)
        s.add_run_event("R1", "retry", "once")
    monkeypatch.setattr(database, "MIGRATIONS", migrations.MIGRATIONS)
    with Store(path) as s:
        assert "m004_run_origin_and_trust" in s.applied_migrations()
        run = s.run("R1")
        assert (run["origin"], run["trusted"], run["imported_from"]) == ("local", 1, None)
        assert list(s.samples("R1")["text"]) == ["t0", "t1", "t2"] and len(s.run_events("R1")) == 1
        assert s.db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert s.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        s.db.execute("INSERT INTO runs (id, cache_key, created_at, model, model_identity, backend, input_mode, "
                     "template, config, seed, origin) VALUES ('R2', 'k', 't', 'm', '{}', 'hf', 'completion', 'raw', "
                     "'{}', 0, 'bundle:x')")  # same key, other origin: allowed now
        assert s.find_run("k") == "R1"
        with pytest.raises(sqlite3.IntegrityError):
            s.db.execute("INSERT INTO samples (id, run_id, sample_index, text, finish_reason, created_at) "
                         "VALUES ('s', 'nope', 0, 'x', 'eos', 't')")  # the samples FK still points at runs


# -- 7. a damaged store is refused, checked and salvaged ---------------------------------------


def damage(path: Path) -> None:
    """Random bytes (fixed seed) into the middle leaf page of the samples table."""
    db = sqlite3.connect(path)
    pages = [r[0] for r in db.execute("SELECT pageno FROM dbstat WHERE name = 'samples' AND pagetype = 'leaf' "
                                      "ORDER BY pageno")]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with path.open("r+b") as f:
        f.seek((pages[len(pages) // 2] - 1) * page_size + 100)
        f.write(random.Random(15).randbytes(512))


def test_issue_a_damaged_store_is_refused_checked_and_salvaged(fake_model, tmp_path):
    store = tmp_path / "s.sqlite"
    for i in range(4):
        draw(fake_model, store, prompt=f"Story {i}:", max_tokens=16)
    draw(fake_model, store)  # the run `sample` would serve
    damage(store)
    assert health_module.quick_problems(sqlite3.connect(store))  # SQLite calls it malformed
    listed = one_error_line(cli(store, "runs", "list"))
    assert f"the run store {store} is damaged (SQLite quick_check:" in listed and "runs salvage" in listed
    assert "is damaged" in one_error_line(cli(store, *SAMPLE_64))
    checked = cli(store, "runs", "check")
    assert checked.returncode == 2 and "integrity_check" in checked.stdout
    fresh = tmp_path / "salvaged.sqlite"
    salvaged = cli(store, "runs", "salvage", "--out", str(fresh))
    assert salvaged.returncode == 0, salvaged.stderr
    assert "samples:" in salvaged.stdout and f"WORKBENCH_STORE={fresh}" in salvaged.stdout
    assert sqlite3.connect(fresh).execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with Store(fresh) as s:
        assert s.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] >= 0.9 * 5 * 64
        assert len(s.runs()) == 5


def test_damage_is_caught_in_a_process_that_opened_the_store_before(fake_model, tmp_path):
    store = tmp_path / "s.sqlite"
    for i in range(3):
        draw(fake_model, store, prompt=f"Story {i}:", max_tokens=16)
    Store(store).close()  # checked and found sound
    damage(store)
    with pytest.raises(StoreError, match="is damaged"):
        Store(store)
    report = salvage(store, tmp_path / "new.sqlite")
    assert report.copied["runs"] == 3 and report.copied["samples"] + report.lost["samples"] == 3 * 64
    with pytest.raises(StoreError, match="already exists"):
        salvage(store, tmp_path / "new.sqlite")


def test_the_quick_check_runs_once_per_file_state(tmp_path, monkeypatch):
    calls = []
    real = health_module.quick_problems
    monkeypatch.setattr(health_module, "quick_problems", lambda db: calls.append(1) or real(db))
    path = tmp_path / "s.sqlite"
    Store(path).close()  # made and migrated
    calls.clear()
    for _ in range(3):
        Store(path).close()
    assert len(calls) == 1
    os.utime(path, ns=(0, 0))  # the file changed
    Store(path).close()
    assert len(calls) == 2


# -- review of #15: findings 4, 5, 9 and 16 ----------------------------------------------------


def _schema_damage(path: Path) -> None:
    """The review's input: 4096 random bytes (fixed seed) over a leaf page of sqlite_schema (the table list)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    leaves = [r[0] for r in db.execute("SELECT pageno FROM dbstat WHERE name = 'sqlite_schema' AND pagetype = 'leaf' "
                                       "ORDER BY pageno")]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    assert leaves and leaves[0] > 1  # a store's table list spans several pages, page 1 holds its root
    with path.open("r+b") as f:
        f.seek((leaves[len(leaves) // 2] - 1) * page_size)
        f.write(random.Random(15).randbytes(page_size))


def test_review_a_damaged_table_list_points_to_check_and_salvage(fake_model, tmp_path):
    store = tmp_path / "s.sqlite"
    for i in range(3):
        draw(fake_model, store, n=8, prompt=f"Story {i}:")
    _schema_damage(store)
    listed = one_error_line(cli(store, "runs", "list"))
    assert f"`workbench runs check --store {store}`" in listed, listed
    assert f"`workbench runs salvage --store {store} --out NEW.sqlite`" in listed
    assert "check the path" not in listed
    with pytest.raises(StoreError, match="runs salvage") as caught:
        Store(store)  # what `sample` opens
    assert "check the path" not in str(caught.value)
    with pytest.raises(StoreError) as caught:
        salvage(store, tmp_path / "new.sqlite")
    message = str(caught.value)
    assert "the table list itself is damaged; nothing can be salvaged with this tool" in message
    assert "sqlite3 command-line `.recover`" in message and "\n" not in message
    assert not (tmp_path / "new.sqlite").exists()
    import argparse

    from workbench.cli.runs import cmd_runs_check

    with pytest.raises(StoreError, match="the table list itself is damaged.*`.recover`"):
        cmd_runs_check(argparse.Namespace(store=str(store)))


def test_review_a_file_that_is_not_a_store_still_says_check_the_path(tmp_path):
    garbage = tmp_path / "notes.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="check the path"):
        Store(garbage)
    with pytest.raises(StoreError, match="not an SQLite database"):
        salvage(garbage, tmp_path / "new.sqlite")


# The review's rows, edited directly in a store: every one is unreadable by the one rule.
REVIEW_ROWS = [
    ("tokens", "[1,2]", "tokens has a wrong entry at position 0: 1"),
    ("top_logprobs", "[1,[2]]", "top_logprobs has a wrong entry at position 0: 1"),
    ("token_logprobs", '["a",null]', "token_logprobs has a wrong entry at position 0: 'a'"),
    ("raw", '"just a string"', "raw must be a JSON object (what the engine reported), got 'just a string'"),
    ("finish_reason", "bogus", "finish_reason must be one of eos, stop, length, got 'bogus'"),
    ("token_ids", "[[[not json", "token_ids is not valid JSON: '[[[not json'"),
]


def _local_run(path: Path, n: int) -> str:
    """A run of n well-formed samples, written without a server."""
    record = RunRecord(cache_key="", model="m", model_identity={"backend": "hf"}, backend="hf",
                       input_mode="completion", template="raw", config=make_config().model_dump(mode="json"), seed=0,
                       input_text="Once")
    record.cache_key = run_cache_key(asdict(record))
    with Store(path) as s:
        run_id = s.ensure_run(record)
        s.add_generations(run_id, [Generation(index=i, text=f"t{i}", token_ids=[i], tokens=[f"t{i}"],
                                              token_logprobs=[-0.5], finish_reason="length", raw={"seed": i})
                                   for i in range(n)], None)
    return run_id


@pytest.mark.parametrize(("column", "value", "problem"), REVIEW_ROWS, ids=[r[0] for r in REVIEW_ROWS])
def test_review_reading_checking_and_exporting_use_one_rule(tmp_path, column, value, problem):
    path = tmp_path / "s.sqlite"
    run_id = _local_run(path, 4)
    with Store(path) as s:
        s.db.execute(f"UPDATE samples SET {column} = ? WHERE sample_index = 2", (value,))
        frame = s.samples(run_id)
        assert list(frame["sample_index"]) == [0, 1, 3]
        assert frame.attrs["skipped_rows"] == [{"sample_index": 2, "problem": problem}]
        assert s.sample_indices(run_id) == {0, 1, 3}  # drawn again by `sample`
        audit = health_module.audit_rows(s)
        assert len(audit) == 1 and "1 unreadable sample row" in audit[0] and problem in audit[0]
        left_out: list[str] = []
        s.export_run(run_id, tmp_path / "run.jsonl", "jsonl", left_out=left_out)
        assert left_out == [f"sample 2: {problem}"]  # the same row, for the same reason


def test_review_sample_says_which_damaged_rows_it_drew_again(fake_model, tmp_path):
    store = tmp_path / "s.sqlite"
    first = draw(fake_model, store, n=8)
    with Store(store) as s:
        ids = dict(s.db.execute("SELECT sample_index, id FROM samples").fetchall())
        for index, (column, value, _) in enumerate(REVIEW_ROWS):
            s.db.execute(f"UPDATE samples SET {column} = ? WHERE sample_index = ?", (value, index))
    checked = cli(store, "runs", "check")
    assert checked.returncode == 2 and "6 unreadable sample rows" in checked.stdout, checked.stdout
    shown = cli(store, "runs", "show", first.run_id)
    assert "bogus" not in shown.stdout and "skipped 6 unreadable rows" in shown.stdout
    sampled = cli(store, "sample", PROMPT, "--model", "fake", "--n", "8", "--max-tokens", "4", "--quiet")
    assert sampled.returncode == 0, sampled.stderr
    assert "8 samples of fake (6 drawn, 2 from the store)" in sampled.stdout
    assert f"6 damaged rows of run {first.run_id} were drawn again: samples 0, 1, 2, 3, 4, 5" in sampled.stdout
    with Store(store) as s:
        assert list(s.samples(first.run_id)["text"]) == first.texts
        assert dict(s.db.execute("SELECT sample_index, id FROM samples").fetchall()) == ids  # replaced in place
        assert health_module.audit_rows(s) == []
        events = s.run_events(first.run_id)
        assert set(events["kind"]) == {"replaced_unreadable_row"}
        assert sorted(i for indices in events["sample_indices"] for i in indices) == [0, 1, 2, 3, 4, 5]


def _csv_with_cell(tmp_path: Path, row: int, column: str, value: str) -> Path:
    genuine = _local_run(tmp_path / "theirs.sqlite", 6)
    with Store(tmp_path / "theirs.sqlite") as s:
        path = s.export_run(genuine, tmp_path / "t3.csv")
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[row - 1, column] = value
    frame.to_csv(path, index=False)
    return path


def test_review_a_bad_csv_cell_is_named_by_its_row_and_value(tmp_path):
    bundle = _csv_with_cell(tmp_path, 4, "sample_index", "abc")
    with Store(tmp_path / "mine.sqlite") as s, pytest.raises(StoreError) as caught:
        s.import_bundle(bundle)
    assert "t3.csv: row 4: sample_index must be a whole number from 0 to 2147483647, got 'abc'" in str(caught.value)
    bundle = _csv_with_cell(tmp_path, 2, "prompt_tokens", "-3")
    with Store(tmp_path / "mine.sqlite") as s, pytest.raises(StoreError, match="row 2 .*prompt_tokens.*got -3"):
        s.import_bundle(bundle)


def _parquet_with_text_numbers(tmp_path: Path, change: dict[int, str]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    genuine = _local_run(tmp_path / "theirs.sqlite", 6)
    with Store(tmp_path / "theirs.sqlite") as s:
        path = s.export_run(genuine, tmp_path / "t3.parquet")
    table = pq.read_table(path)
    for name in ("sample_index", "prompt_tokens"):
        cells = [None if v is None else str(v) for v in table.column(name).to_pylist()]
        if name == "sample_index":
            for row, value in change.items():
                cells[row - 1] = value
        table = table.set_column(table.schema.get_field_index(name), pa.field(name, pa.string()),
                                 pa.array(cells, type=pa.string()))
    pq.write_table(table.replace_schema_metadata(pq.read_table(path).schema.metadata), path)
    return path


def test_review_parquet_string_number_columns_read_as_numbers(tmp_path):
    with Store(tmp_path / "mine.sqlite") as s:
        result = s.import_bundle(_parquet_with_text_numbers(tmp_path, {}))
        assert result.added == 6 and list(s.samples(result.run_id)["sample_index"]) == list(range(6))
        with pytest.raises(StoreError) as caught:
            s.import_bundle(_parquet_with_text_numbers(tmp_path, {4: "abc"}))
    assert "t3.parquet: row 4: sample_index must be a whole number from 0 to 2147483647, got 'abc'" in str(caught.value)


def test_review_a_huge_index_is_shown_as_given(fake_model, tmp_path):
    genuine = draw(fake_model, tmp_path / "theirs.sqlite", n=4)
    lines = export_jsonl(tmp_path / "theirs.sqlite", genuine.run_id, tmp_path / "run.jsonl")
    text = (tmp_path / "run.jsonl").read_text().replace('"sample_index": 1,', '"sample_index": 1e30,')
    (tmp_path / "big.jsonl").write_text(text)
    assert len(lines) == 5 and "1e30" in text
    with Store(tmp_path / "mine.sqlite") as s, pytest.raises(StoreError) as caught:
        s.import_bundle(tmp_path / "big.jsonl")
    assert "line 3: sample_index must be a whole number from 0 to 2147483647, got 1e+30;" in str(caught.value)


def test_review_salvage_of_a_healthy_store_says_it_was_not_needed(tmp_path):
    path = tmp_path / "s.sqlite"
    _local_run(path, 3)
    report = salvage(path, tmp_path / "copy.sqlite")
    text = report.describe()
    assert report.healthy and "passed SQLite's integrity check: salvage was not needed" in text
    assert report.copied["samples"] == 3  # copying is harmless; it was asked for
