"""Linear probes (issue #17, part 1): the sweep's honesty mechanics on a known-easy task.

The task: celebration endings versus other endings of the same generated story openings
(workbench.lens.story_sets). Thresholds are the issue's: test AUROC >= 0.9 at the layer chosen on
validation, and the shuffled-label baseline's interval at that layer contains 0.5.
"""

from __future__ import annotations

import numpy as np
import pytest

from workbench.lens.probes import load_probe, probe_sweep, read_probe, save_probe
from workbench.lens.story_sets import story_endings

BASE = "gemma-3-270m"


@pytest.fixture(scope="module")
def prober(module_sampler):
    return module_sampler


def test_a_probe_sweep_chooses_on_validation_reports_on_test_and_reads_token_by_token(prober):
    positive, negative = story_endings("celebration", 30), story_endings("other", 30)
    sweep = probe_sweep(prober, BASE, positive, negative, [1, 6, 12], "celebration-ending")
    frame = sweep.layers
    assert list(frame["layer"]) == [1, 6, 12] and sweep.splits == {"train": 36, "validation": 12, "test": 12}
    chosen = frame[frame["layer"] == sweep.chosen_layer].iloc[0]
    best = frame.sort_values(["val_auroc", "val_log_loss"], ascending=[False, True]).iloc[0]
    assert chosen["layer"] == best["layer"]  # chosen by validation, whatever the test split says
    assert chosen["test_auroc"] >= 0.9, frame
    assert chosen["shuffled_ci_low"] <= 0.5 <= chosen["shuffled_ci_high"], frame
    assert (frame["test_ci_low"] <= frame["test_auroc"]).all() and (frame["test_auroc"] <= frame["test_ci_high"]).all()

    save_probe(sweep.probe, overwrite=True)
    probe = load_probe("celebration-ending")
    assert probe.layer == sweep.chosen_layer and np.isclose(probe.threshold, sweep.probe.threshold)
    assert probe.metadata["sets_hash"] and probe.metadata["model"] == BASE
    # Read token by token over held-out texts: the response's tokens only, about 5 % of control tokens pass.
    control = read_probe(prober, probe, BASE, story_endings("other", 20, seed=3))
    assert control["position"].min() == 0 and 0.0 <= control["passes"].mean() <= 0.2
    celebration = read_probe(prober, probe, BASE, story_endings("celebration", 20, seed=3))
    assert celebration["score"].mean() > control["score"].mean()
