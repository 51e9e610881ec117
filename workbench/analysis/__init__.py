"""Analysis: from samples and scores to answers, distributions, metrics and comparisons.

    answers        continuations -> answers (the extractors live in workbench.prompts)
    distributions  exact (scored candidates) and sampled (Jeffreys CIs) answer distributions
    summaries      the total and in-space views of a distribution, P(other) and its warning
    estimators     estimators with checked intervals and regimes (shares, entropy, JSD, differences)
    agreement      the G-test of sampled counts against an exact distribution
    metrics        the answer metrics as rows; distinct-n, distinct@k, embedding diversity, clusters
    comparisons    divergences, differences, compare_prompt, collection_summary
    sweeps         metrics against temperature
    statistics     the one entropy, the one bootstrap, permutation tests, corrections

Models are reached only through the Sampler's public methods; nothing here holds a backend.
"""

from workbench.analysis.agreement import AgreementTest, agreement_with_exact
from workbench.analysis.answers import answers_of
from workbench.analysis.comparisons import (
    PromptComparison,
    collection_summary,
    compare_answers,
    compare_prompt,
    compare_runs,
    difference_estimate,
    paired_difference,
)
from workbench.analysis.distributions import (
    OTHER,
    AnswerDistribution,
    can_be_exact,
    distribution_table,
    exact_distribution,
    exact_distributions,
    sampled_distribution,
)
from workbench.analysis.estimators import (
    Estimate,
    entropy_difference_estimate,
    entropy_estimate,
    jsd_estimate,
    proportion_estimate,
    share_difference_estimate,
    top_share_estimate,
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
from workbench.analysis.summaries import ANSWER_METRICS, OTHER_WARNING_THRESHOLD, distribution_summary
from workbench.analysis.sweeps import SWEEP_COLUMNS, temperature_sweep

__all__ = [
    "ANSWER_METRICS",
    "METRIC_COLUMNS",
    "OTHER",
    "OTHER_WARNING_THRESHOLD",
    "SWEEP_COLUMNS",
    "AgreementTest",
    "AnswerDistribution",
    "Clusters",
    "Estimate",
    "PromptComparison",
    "adjust_pvalues",
    "agreement_with_exact",
    "answer_metrics",
    "answers_of",
    "bootstrap_ci",
    "can_be_exact",
    "collection_summary",
    "compare_answers",
    "compare_prompt",
    "compare_runs",
    "count_metrics",
    "difference_estimate",
    "distinct_n",
    "distribution_metrics",
    "distribution_summary",
    "distribution_table",
    "entropy_bits",
    "entropy_difference_estimate",
    "entropy_estimate",
    "exact_distribution",
    "exact_distributions",
    "jensen_shannon",
    "jsd_estimate",
    "paired_difference",
    "proportion_estimate",
    "share_difference_estimate",
    "permutation_test",
    "sampled_distribution",
    "semantic_clusters",
    "sign_flip_test",
    "smoothed_kl",
    "temperature_sweep",
    "text_metrics",
    "top_share_estimate",
    "wilson_interval",
]
