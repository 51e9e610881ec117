"""Analysis: from samples and scores to answers, distributions, metrics and comparisons.

    answers        continuations -> answers (the extractors live in workbench.prompts)
    distributions  exact (scored candidates) and sampled (bootstrap CIs) answer distributions
    metrics        entropy, top-1 mass, distinct answers, distinct-n, distinct@k, clusters
    comparisons    divergences, paired differences, compare_prompt, collection_summary
    sweeps         metrics against temperature
    statistics     the one entropy, the one bootstrap, intervals, permutation tests, corrections

Models are reached only through the Sampler's public methods; nothing here holds a backend.
"""

from workbench.analysis.answers import answers_of
from workbench.analysis.comparisons import (
    PromptComparison,
    collection_summary,
    compare_answers,
    compare_prompt,
    compare_runs,
    paired_difference,
)
from workbench.analysis.distributions import (
    OTHER,
    AnswerDistribution,
    can_be_exact,
    chi_square_against_exact,
    distribution_table,
    exact_distribution,
    exact_distributions,
    sampled_distribution,
)
from workbench.analysis.metrics import (
    METRIC_COLUMNS,
    Clusters,
    answer_metrics,
    count_metrics,
    distinct_n,
    distribution_metrics,
    semantic_clusters,
    text_metrics,
)
from workbench.analysis.statistics import (
    adjust_pvalues,
    bootstrap_ci,
    entropy_bits,
    jensen_shannon,
    permutation_test,
    sign_flip_test,
    smoothed_kl,
    wilson_interval,
)
from workbench.analysis.sweeps import SWEEP_COLUMNS, temperature_sweep

__all__ = [
    "METRIC_COLUMNS",
    "OTHER",
    "SWEEP_COLUMNS",
    "AnswerDistribution",
    "Clusters",
    "PromptComparison",
    "adjust_pvalues",
    "answer_metrics",
    "answers_of",
    "bootstrap_ci",
    "can_be_exact",
    "chi_square_against_exact",
    "collection_summary",
    "compare_answers",
    "compare_prompt",
    "compare_runs",
    "count_metrics",
    "distinct_n",
    "distribution_metrics",
    "distribution_table",
    "entropy_bits",
    "exact_distribution",
    "exact_distributions",
    "jensen_shannon",
    "paired_difference",
    "permutation_test",
    "sampled_distribution",
    "semantic_clusters",
    "sign_flip_test",
    "smoothed_kl",
    "temperature_sweep",
    "text_metrics",
    "wilson_interval",
]
