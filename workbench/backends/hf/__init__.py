"""The transformers backend: weights and loading (weights), the sampling maths (sampling), the backend (backend).

Importing this package imports torch; the backend registry imports it only when an hf model is used.
"""

from __future__ import annotations

from workbench.backends.hf.backend import MIN_DECODE_ROWS, SCORE_CHUNK, HFBackend
from workbench.backends.hf.sampling import (
    SAMPLING_ALGORITHM,
    end_token_mask,
    inverse_cdf_pick,
    sample_uniforms,
    sampling_distribution,
)
from workbench.backends.hf.weights import (
    PREPARED_MARKER,
    THREADS_ENV,
    adapter_location,
    apply_thread_setting,
    checkpoint_location,
    cpu_has_fast_bf16,
    default_device,
    gguf_path,
    is_prepared,
    load_model,
    load_tokenizer,
    needs_preparation,
    prepare_model,
    prepare_status,
    prepared_dir,
    resolve_dtype,
    vocabulary_texts,
)

__all__ = [
    "MIN_DECODE_ROWS",
    "PREPARED_MARKER",
    "SAMPLING_ALGORITHM",
    "SCORE_CHUNK",
    "THREADS_ENV",
    "HFBackend",
    "adapter_location",
    "apply_thread_setting",
    "checkpoint_location",
    "cpu_has_fast_bf16",
    "default_device",
    "end_token_mask",
    "gguf_path",
    "inverse_cdf_pick",
    "is_prepared",
    "load_model",
    "load_tokenizer",
    "needs_preparation",
    "prepare_model",
    "prepare_status",
    "prepared_dir",
    "resolve_dtype",
    "sample_uniforms",
    "sampling_distribution",
    "vocabulary_texts",
]
