"""Keeping transformers, peft and sentence-transformers quiet inside the workbench's own calls.

Loading a checkpoint draws a "Loading weights" progress bar and can log notes and deprecation
warnings meant for library developers; none of that should reach a researcher's terminal or
notebook, where it interleaves with tables and progress bars. The filters apply only inside
`quiet_library()` and are undone on leaving, so the user's own transformers calls are untouched.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_library() -> Iterator[None]:
    """Within: transformers logs errors only, draws no progress bars, and library warnings are dropped."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # Only library code runs in here (a load, a merge), so every warning is the library's, whichever
            # frame it names: peft, for one, attributes its warnings to the caller.
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
