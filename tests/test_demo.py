"""The main job on the embedded pair: tables, figures with provenance, a second run from the cache,
and the same numbers as the public functions a researcher calls."""

from __future__ import annotations

import json

from workbench.analysis import compare_prompt
from workbench.backends import hf
from workbench.demo import DEMO_PROBES, run_demo
from workbench.sampler import Sampler


def test_demo_prints_tables_writes_figures_and_answers_again_from_the_cache(embedded_models, fresh_store, tmp_path,
                                                                           capsys, monkeypatch):
    out_dir = tmp_path / "demo"
    tables = run_demo(n=4, sampler=Sampler(store=fresh_store, progress=False), out_dir=out_dir)
    printed = capsys.readouterr().out
    assert "different families" in printed and "Figures" in printed and str(fresh_store) in printed
    assert "entropy_ci" in printed and "Jensen-Shannon divergence" in printed and "permutation p" in printed
    assert set(tables) == {p.name for p in DEMO_PROBES}
    for probe in DEMO_PROBES:
        table = tables[probe.name]
        assert list(table["model"]) == ["gemma-3-270m", "smollm2-135m-instruct"]
        assert list(table["kind"]) == ["base", "tuned"] and table["family"].nunique() == 2
        assert (table["n"] == 4).all()
        assert {"distinct_answers", "entropy_bits", "entropy_ci", "top_answer", "top_share"} <= set(table.columns)
        for suffix in (".png", ".svg", ".provenance.json"):
            assert (out_dir / f"{probe.name}{suffix}").stat().st_size > 0
        provenance = json.loads((out_dir / f"{probe.name}.provenance.json").read_text())
        assert len(provenance["runs"]) == 2 and "different families" in provenance["families"]
        assert len(provenance["divergence"]) == 1 and 0 <= provenance["divergence"][0]["p_value"] <= 1

    def refuse(*args, **kwargs):
        raise AssertionError("the second demo run sampled again")

    monkeypatch.setattr(hf.HFBackend, "generate", refuse)
    sampler = Sampler(store=fresh_store, progress=False)
    again = run_demo(n=4, sampler=sampler, out_dir=out_dir)
    for name, table in tables.items():
        assert again[name].equals(table)
    # The demo is the researcher's path: compare_prompt with the probe's settings gives the same table.
    probe = DEMO_PROBES[0]
    report = compare_prompt(sampler, list(tables[probe.name]["model"]), probe.prompt, 4, answer=probe.answer,
                            chat=probe.chat, max_tokens=probe.max_tokens)
    assert report.summary.equals(tables[probe.name])
    sampler.close()
