"""Input checks shared by the figure functions: bad frames fail with an error that says what to change."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError


def check_frame(frame: object, func: str, what: str, required: Sequence[str], optional: Sequence[str] = (),
                hint: str = "") -> pd.DataFrame:
    """Raise a WorkbenchError naming what to change unless `frame` is a non-empty DataFrame with `required`."""
    if not isinstance(frame, pd.DataFrame):
        raise WorkbenchError(f"{func}: {what} must be a pandas DataFrame, not {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        extra = f" (optional: {', '.join(optional)})" if optional else ""
        raise WorkbenchError(
            f"{func}: {what} lacks column(s) {', '.join(missing)}; it needs {', '.join(required)}{extra}"
        )
    if frame.empty:
        raise WorkbenchError(f"{func}: {what} has no rows; {hint or 'pass at least one row'}")
    return frame


def numeric_column(frame: pd.DataFrame, column: str, func: str, what: str) -> pd.Series:
    """A column as floats, or an error naming the column when it holds text."""
    try:
        return pd.to_numeric(frame[column]).astype(float)
    except (ValueError, TypeError) as exc:
        raise WorkbenchError(f"{func}: column {column!r} of {what} must be numeric ({exc})") from None


def optional_column(frame: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column, or all NaN when it is absent (e.g. exact distributions have no CIs)."""
    if column in frame.columns:
        return pd.to_numeric(frame[column], errors="coerce").astype(float)
    return pd.Series(np.nan, index=frame.index)


def no_duplicates(frame: pd.DataFrame, keys: list[str], func: str, advice: str) -> None:
    """One row per key combination: duplicates would be drawn on top of each other silently."""
    dup = frame[frame.duplicated(keys, keep=False)]
    if not dup.empty:
        first = ", ".join(f"{k}={dup.iloc[0][k]!r}" for k in keys)
        raise WorkbenchError(f"{func}: several rows for {first}; keep one row per {', '.join(keys)} ({advice})")
