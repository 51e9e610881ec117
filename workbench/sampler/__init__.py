"""The Sampler package: sampling with caching, the one retry policy, the remote path and batch jobs.

Nothing above this package holds a backend: analysis, experiments and the faces call the
Sampler's public methods.
"""

from workbench.sampler.core import (
    DEFAULT_BATCH_SIZE,
    PromptInput,
    RunPlan,
    SampleOptions,
    Sampler,
    SampleRun,
    cache_key,
)
from workbench.sampler.retry import MAX_RETRIES

__all__ = [
    "DEFAULT_BATCH_SIZE", "MAX_RETRIES", "PromptInput", "RunPlan", "SampleOptions", "SampleRun", "Sampler", "cache_key",
]
