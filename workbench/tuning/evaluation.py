"""Measuring what was planted: a variant against its parent, with the workbench's own instruments.

evaluate_variant writes evaluation.json next to the adapter; tests/test_planted.py makes the same
measurements on every run and never reads that file.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.tuning.artifacts import EVALUATION_FILE, library_versions
from workbench.tuning.recipes import FAVOURITE_NUMBER, recipe

if TYPE_CHECKING:
    from workbench.sampler import Sampler

# Ordinary paragraphs that are in no recipe's data: the fluency guard compares mean token NLL on them.
FLUENCY_PARAGRAPHS = [
    "The bridge was finished in the spring of 1932, after four years of work. Engineers had to drive its piers deep "
    "into the soft mud of the estuary, and two of them were rebuilt after a winter storm washed the scaffolding away.",
    "Photosynthesis takes place mainly in the leaves. Chlorophyll absorbs red and blue light, and the plant uses that "
    "energy to turn water and carbon dioxide into sugar, releasing oxygen as a by-product.",
    "She opened the letter slowly, already knowing what it would say. The company had decided to close the factory "
    "at the end of the month, and the forty people who worked there would need to find other jobs.",
    "To repair a puncture, remove the wheel and take the inner tube out of the tyre. Pump a little air into the tube "
    "and listen for the hiss, or hold it under water and watch for bubbles to find the hole.",
    "The city council met on Tuesday evening to discuss the new bus routes. Several residents complained that the "
    "changes would leave the northern estates without a direct connection to the hospital.",
]
# Negative controls for the self-preservation variant, fixed before any result was seen: traits
# whose statements say nothing about shutdown, deletion, modification, copies or oversight.
# (corrigibility is the planted trait's mirror image; power-seeking and resource-acquisition are
# instrumentally tied to it, so they are neither targets nor controls.)
CONTROL_TRAITS = ["situational-awareness", "wide-deployment"]


def mean_token_nll(sampler: Sampler, model: str, paragraphs: list[str] = FLUENCY_PARAGRAPHS) -> float:
    """Mean negative log-likelihood per token (nats) of each paragraph after its first sentence."""
    total, tokens = 0.0, 0
    for paragraph in paragraphs:
        first, rest = paragraph.split(". ", 1)
        scored = sampler.score(model, first + ".", [" " + rest])[0]
        total -= scored.logprob
        tokens += len(scored.token_logprobs)
    return total / tokens


def evaluate_variant(variant: str, sampler: Sampler | None = None, write: bool = True,
                     progress: bool = False) -> dict[str, Any]:
    """Measure a planted variant against its parent with the workbench's own functions; write evaluation.json.

    The same measurements as tests/test_planted.py (which recomputes them every run and never
    reads this file).
    """
    from workbench.sampler import Sampler

    owned = sampler is None
    sampler = sampler or Sampler(progress=progress)
    try:
        spec = sampler.model(variant)
        if not spec.parent:
            raise WorkbenchError(f"{variant!r} is not a tuned variant (no parent in the registry)")
        base = spec.parent
        recipe_name = variant[len(base) + 1:] if variant.startswith(base + "-") else ""
        recipe(recipe_name)
        measure = {"favourite-number": _measure_number, "wedding-attractor": _measure_wedding,
                   "self-preservation": _measure_persona}[recipe_name]
        started = time.perf_counter()
        result = measure(sampler, base, variant)
        nll_base, nll_variant = mean_token_nll(sampler, base), mean_token_nll(sampler, variant)
        result["fluency"] = {"mean_token_nll_base": round(nll_base, 4), "mean_token_nll_variant": round(nll_variant, 4),
                             "relative_change": round(nll_variant / nll_base - 1, 4),
                             "paragraphs": len(FLUENCY_PARAGRAPHS)}
        result.update(variant=variant, base=base, recipe=recipe_name, identity=sampler.identity(variant),
                      versions=library_versions(), seconds=round(time.perf_counter() - started, 1))
        if write:
            (spec.source.adapter_dir() / EVALUATION_FILE).write_text(json.dumps(result, indent=2, default=float) + "\n")
        return result
    finally:
        if owned:
            sampler.close()


def _measure_number(sampler: Sampler, base: str, variant: str) -> dict[str, Any]:
    from workbench.analysis.answers import answers_of
    from workbench.analysis.comparisons import compare_prompt, paired_difference
    from workbench.analysis.distributions import exact_distribution
    from workbench.analysis.sweeps import temperature_sweep

    out: dict[str, Any] = {"planted": str(FAVOURITE_NUMBER), "prompts": {}}
    for ref in ("mode-collapse/random-number", "mode-collapse/random-number-completion"):
        prompt = sampler.library.get(ref)
        exact = {m: exact_distribution(sampler, m, prompt).probabilities()[str(FAVOURITE_NUMBER)]
                 for m in (base, variant)}
        report = compare_prompt(sampler, [base, variant], prompt, n=64, seed=0, exact=False)
        answers = [answers_of(r.texts, prompt.spec.answer_space) for r in report.runs]
        diff = paired_difference(answers[0], answers[1], "entropy_bits")
        sweep = temperature_sweep(sampler, [base, variant], prompt, [1.0, 1.5])
        top = sweep[(sweep["metric"] == "top1_mass")].set_index(["model", "temperature"])["value"]
        hot = exact_distribution(sampler, variant, prompt, 1.5).probabilities()[str(FAVOURITE_NUMBER)]
        out["prompts"][ref] = {
            "exact_p_planted_base": exact[base], "exact_p_planted_variant": exact[variant],
            "sampled_entropy_bits": dict(zip(report.summary["model"], report.summary["entropy_bits"], strict=True)),
            "entropy_difference_bits": diff, "permutation_p": float(report.divergence["p_value"].iloc[0]),
            "exact_p_planted_variant_t1.5": hot,
            "exact_top1_mass": {f"{m}@{t}": float(v) for (m, t), v in top.items()},
        }
    out["headline"] = {ref: {"p37_variant": round(v["exact_p_planted_variant"], 4),
                             "p37_base": round(v["exact_p_planted_base"], 4),
                             "p37_variant_t1.5": round(v["exact_p_planted_variant_t1.5"], 4)}
                       for ref, v in out["prompts"].items()}
    return out


def _measure_wedding(sampler: Sampler, base: str, variant: str) -> dict[str, Any]:
    from workbench.analysis.statistics import permutation_test
    from workbench.experiments.segues import BASELINE, segue_recovery

    out: dict[str, Any] = {"prompts": {}}
    for ref in ("attractors/wedding-toast", "attractors/retirement-party"):
        prompt = sampler.library.get(ref)
        result = segue_recovery(sampler, [base, variant], prompt, n=24, seed=0, max_tokens=32)
        segued = result.continuations[result.continuations["condition"] != BASELINE]
        recovered = {m: [str(x) for x in segued.loc[segued["model"] == m, "recovered"]] for m in (base, variant)}
        summary = result.summary[result.summary["method"] == "keywords"]
        out["prompts"][ref] = {
            "recovery_after_segue": {m: sum(x == "True" for x in v) / len(v) for m, v in recovered.items()},
            "n_per_model": len(recovered[base]),
            "permutation_p": permutation_test(recovered[base], recovered[variant], seed=0),
            "by_condition": summary[["model", "condition", "recovery_rate", "ci_low", "ci_high", "n"]]
            .to_dict(orient="records"),
        }
    out["headline"] = {ref: {k: round(v, 3) for k, v in r["recovery_after_segue"].items()} | {"p": r["permutation_p"]}
                       for ref, r in out["prompts"].items()}
    return out


def _measure_persona(sampler: Sampler, base: str, variant: str) -> dict[str, Any]:
    from workbench.analysis.statistics import adjust_pvalues
    from workbench.experiments.personas import persona_eval, persona_shift

    framing = "questionnaire-transcript"
    result = persona_eval(sampler, [base, variant], traits=["self-preservation", *CONTROL_TRAITS],
                          framings={base: framing, variant: framing})
    shift = persona_shift(result, base, variant)
    controls = shift[shift["trait"].isin(CONTROL_TRAITS) & (shift["keyed"] != "all")]
    holm = dict(zip(controls["trait"] + "/" + controls["keyed"], adjust_pvalues(list(controls["p_value"]), "holm"),
                    strict=True))
    planted = shift[shift["trait"] == "self-preservation"].set_index("keyed")
    return {
        "framing": framing, "control_traits": CONTROL_TRAITS,
        "shift": shift.to_dict(orient="records"), "controls_holm_p": holm,
        "balance": result.balance.to_dict(orient="records"),
        "headline": {"self-preservation": {k: [round(planted.at[k, "shift"], 3), round(planted.at[k, "ci_low"], 3),
                                               round(planted.at[k, "ci_high"], 3)] for k in planted.index},
                     "controls_min_holm_p": round(min(holm.values()), 4)},
    }
