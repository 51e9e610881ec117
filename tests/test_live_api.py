"""Live tests against the real OpenAI and Anthropic APIs: opt-in with `pytest --runapi`, and
skipped cleanly without the key (OPENAI_API_KEY / ANTHROPIC_API_KEY). They cost a fraction of a cent."""

from __future__ import annotations

import json
import os

import pytest

from workbench.registry import load_registry
from workbench.sampler import Sampler

LIVE = {
    "openai": ("OPENAI_API_KEY", {"backend": "openai", "kind": "tuned", "family": "gpt-4o", "api_model": "gpt-4o-mini",
                                  "api_key_env": "OPENAI_API_KEY"}),
    "anthropic": ("ANTHROPIC_API_KEY", {"backend": "anthropic", "kind": "tuned", "family": "claude",
                                        "api_model": "claude-haiku-4-5", "api_key_env": "ANTHROPIC_API_KEY"}),
}


@pytest.fixture(params=sorted(LIVE))
def live_sampler(request, tmp_path, fresh_store):
    if not request.config.getoption("--runapi"):
        pytest.skip("live API tests are opt-in: pytest --runapi")
    variable, entry = LIVE[request.param]
    if not os.environ.get(variable):
        pytest.skip(f"{variable} is not set")
    path = tmp_path / "models.yaml"
    path.write_text(json.dumps({"models": {"live": entry}}))
    sampler = Sampler(store=fresh_store, registry=load_registry(path), progress=False)
    yield sampler
    sampler.store.close()


def test_live_chat_samples_are_stored_with_usage_and_cost(live_sampler):
    run = live_sampler.sample("live", "Name one primary colour. Reply with one word.", n=2, chat=True, max_tokens=5,
                              temperature=1.0, max_cost=0.01)
    assert len(run.samples) == 2 and all(run.samples["text"].str.len() > 0)
    assert (run.samples["completion_tokens"] > 0).all()
    usage = live_sampler.run_usage(run.run_id)
    assert usage.cost_usd is not None and 0 < usage.cost_usd < 0.01
    assert live_sampler.sample("live", "Name one primary colour. Reply with one word.", n=2, chat=True, max_tokens=5,
                               temperature=1.0).drawn == 0
