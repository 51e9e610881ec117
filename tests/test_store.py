"""The SQLite run store: migrations, idempotent writes, export and import."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict

import pytest

from workbench.errors import StoreError
from workbench.store import RunRecord, Store, migrations, new_id
from workbench.store.keys import run_cache_key
from workbench.types import Generation, TokenLogprob


def make_run(key: str = "key-1", **overrides) -> RunRecord:
    fields = dict(
        cache_key=key, model="m", model_identity={"backend": "hf", "weights": {"path": "/x"}, "dtype": "bfloat16"},
        backend="hf", input_mode="completion", template="raw", config={"temperature": 1.0}, seed=0,
        model_kind="base", model_family="f", input_text="Once upon a time,",
    )
    fields.update(overrides)
    return RunRecord(**fields)


def make_generation(index: int, text: str = "hello") -> Generation:
    return Generation(
        index=index, text=text, token_ids=[1, 2], tokens=["hel", "lo"], token_logprobs=[-0.5, -0.25],
        finish_reason="length", prompt_tokens=4, completion_tokens=2, latency_s=0.1,
        top_logprobs=[[TokenLogprob(1, "hel", -0.5)], [TokenLogprob(2, "lo", -0.25)]],
    )


def test_migrations_run_once_in_order(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        names = store.applied_migrations()
    assert names == [m.__name__ for m in migrations.MIGRATIONS]
    with Store(path) as store:  # opening again applies nothing new
        assert store.applied_migrations() == names
        count = store.db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0]
    assert count == len(names)


def test_migration_names_are_numbered_and_unique():
    names = [m.__name__ for m in migrations.MIGRATIONS]
    assert len(set(names)) == len(names)
    numbers = [int(n[1:4]) for n in names]
    assert all(n.startswith("m") for n in names) and numbers == sorted(numbers)


def test_a_new_migration_is_applied_to_an_existing_store(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    Store(path).close()

    def m999_add_notes(db):
        db.execute("ALTER TABLE runs ADD COLUMN notes TEXT")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m999_add_notes])
    import workbench.store.database as store_module

    monkeypatch.setattr(store_module, "MIGRATIONS", migrations.MIGRATIONS)
    with Store(path) as store:
        assert store.applied_migrations()[-1] == "m999_add_notes"
        columns = [r[1] for r in store.db.execute("PRAGMA table_info(runs)")]
    assert "notes" in columns


def test_wal_mode_and_busy_timeout(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000


def test_ensure_run_is_idempotent_by_cache_key(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        first = store.ensure_run(make_run("k"))
        second = store.ensure_run(make_run("k", model="renamed"))
        other = store.ensure_run(make_run("k2"))
        assert first == second != other
        assert store.run(first)["model"] == "m"


def test_run_events_come_back_in_the_order_they_were_recorded(tmp_path):
    # Many events within one millisecond: their time-sortable ids tie on the time part.
    with Store(tmp_path / "s.sqlite") as store:
        run_id = store.ensure_run(make_run("k"))
        for attempt in range(40):
            store.add_run_event(run_id, "retry", f"event {attempt}", attempt=attempt)
        assert list(store.run_events(run_id)["attempt"]) == list(range(40))


def test_samples_are_stored_once_per_index(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        run_id = store.ensure_run(make_run())
        env = store.ensure_environment({"workbench": "0", "torch": "x"})
        assert store.add_generations(run_id, [make_generation(0), make_generation(1)], env) == 2
        assert store.add_generations(run_id, [make_generation(1, "other"), make_generation(2)], env) == 1
        frame = store.samples(run_id)
        assert list(frame["sample_index"]) == [0, 1, 2]
        assert frame.loc[1, "text"] == "hello"  # the first stored sample wins
        assert frame.loc[0, "token_logprobs"] == [-0.5, -0.25]
        assert frame.loc[0, "logprob"] == pytest.approx(-0.75)
        assert frame.loc[0, "model_kind"] == "base"
        assert store.sample_indices(run_id) == {0, 1, 2}


def test_ids_sort_by_time():
    import time

    first = new_id()
    time.sleep(0.002)
    assert new_id() > first and len(first) == 26


def test_run_id_prefix_resolves_and_unknown_is_a_clear_error(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        run_id = store.ensure_run(make_run())
        assert store.resolve_run_id(run_id[:20]) == run_id
        with pytest.raises(StoreError, match="runs list"):
            store.run("ZZZZ")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_and_import_round_trip(tmp_path, fmt):
    source, target = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    record = make_run(input_messages=[{"role": "user", "content": "hi"}])
    record.cache_key = run_cache_key(asdict(record))  # an import recomputes the key from the run's fields
    run_id = source.ensure_run(record)
    env = source.ensure_environment({"workbench": "0"})
    generations = [make_generation(i, f"text {i}\nline") for i in range(3)] + [make_generation(3, "")]
    source.add_generations(run_id, generations, env)
    bundle = source.export_run(run_id, tmp_path / f"bundle.{fmt}")

    imported = target.import_bundle(bundle)
    imported_id = imported.run_id
    assert (imported_id, imported.added, imported.present) == (run_id, 4, 0)
    a, b = source.samples(run_id), target.samples(imported_id)
    assert list(a["text"]) == list(b["text"])
    assert list(a["token_ids"]) == list(b["token_ids"])
    assert list(a["top_logprobs"]) == list(b["top_logprobs"])
    assert target.run(imported_id)["input_messages"] == [{"role": "user", "content": "hi"}]
    assert target.environments(b["environment_id"]) == {env: {"workbench": "0"}}
    # Importing again adds nothing: a shared run merges, never duplicates.
    again = target.import_bundle(bundle)
    assert (again.run_id, again.added, again.present) == (run_id, 0, 4)


def test_import_rejects_files_that_are_not_bundles(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"hello": 1}\n')
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(StoreError, match="header"):
            store.import_bundle(bad)
        with pytest.raises(StoreError, match="no such bundle"):
            store.import_bundle(tmp_path / "missing.parquet")
        with pytest.raises(StoreError, match="use one of"):
            store.export_run(store.ensure_run(make_run()), tmp_path / "x.xlsx")


def test_a_store_that_cannot_be_opened_is_a_clear_error(tmp_path):
    blocker = tmp_path / "dir.sqlite"
    blocker.mkdir()
    with pytest.raises(StoreError, match="cannot open the run store"):
        Store(blocker)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        Store(garbage)


def test_a_failed_write_leaves_no_partial_batch(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        run_id = store.ensure_run(make_run())
        bad = make_generation(1)
        bad.finish_reason = None  # NOT NULL violation inside the batch
        with pytest.raises(sqlite3.IntegrityError):
            store.add_generations(run_id, [make_generation(0), bad], None)
        assert store.sample_indices(run_id) == set()
