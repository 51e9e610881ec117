"""Limits on one template render: time and size, checked from inside the sandbox.

Templates come from files anyone may share, so a render has a budget: a deadline and a size cap.
The sandbox checks the deadline at every loop iteration, call, attribute access and output, and
checks the size of a value *before* an operation that could build a big one (`'A' * n`, widths such
as `center(n)` or `'%999999999s'`, joins, replacements, repeated aliases of one list). No signals
are used, so the limits hold in any thread (the panels render in worker threads).

The budget lives in a context variable set for the length of one render; the defaults (2 s, one
million characters) can be changed with WORKBENCH_RENDER_SECONDS and WORKBENCH_RENDER_MAX_CHARS or by
passing `RenderLimits` to `render_template`.
"""

from __future__ import annotations

import itertools
import os
import re
import string
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2.utils import Namespace

from workbench.errors import ConfigError, WorkbenchError

RENDER_SECONDS_ENV = "WORKBENCH_RENDER_SECONDS"
RENDER_MAX_CHARS_ENV = "WORKBENCH_RENDER_MAX_CHARS"
DEFAULT_RENDER_SECONDS = 2.0
DEFAULT_RENDER_MAX_CHARS = 1_000_000
# Whole numbers a template computes stay below 2**131072 (about 39,000 digits, more than Python
# will print): `9 ** 9 ** 9` would otherwise take minutes inside one multiplication.
MAX_INT_BITS = 1 << 17
# `sum(start=[])` copies the running list at every item: refuse when that copying would be large.
QUADRATIC_WORK_FACTOR = 64


class RenderLimitError(WorkbenchError):
    """A template ran past its time limit or would have produced more than its size limit."""


class LimitBreach(Exception):
    """Raised inside a render when the budget is spent; `render_template` names the place and the fix."""


@dataclass(frozen=True)
class RenderLimits:
    """How long one render may run and how much text (or how big a value) it may build."""

    seconds: float = DEFAULT_RENDER_SECONDS
    max_chars: int = DEFAULT_RENDER_MAX_CHARS

    @classmethod
    def from_env(cls) -> RenderLimits:
        """The defaults, changed by $WORKBENCH_RENDER_SECONDS and $WORKBENCH_RENDER_MAX_CHARS."""
        return cls(seconds=env_number(RENDER_SECONDS_ENV, DEFAULT_RENDER_SECONDS, float, "a number of seconds"),
                   max_chars=env_number(RENDER_MAX_CHARS_ENV, DEFAULT_RENDER_MAX_CHARS, int,
                                         "a whole number of characters"))


def env_number(name: str, default: float, kind: type, what: str) -> Any:
    """A positive finite number from environment variable `name` (`default` when unset); ConfigError otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise ConfigError(f"{name}={raw!r}: give {what} above 0, or unset it for the default {default:g}")
    return value


@dataclass
class Budget:
    """What one render may still spend; every check raises LimitBreach with what was refused."""

    limits: RenderLimits
    deadline: float = field(init=False)
    produced: int = 0
    _sizes: dict[int, tuple[Any, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.limits.seconds

    def tick(self) -> None:
        """Stop the render once its time is up."""
        if time.monotonic() > self.deadline:
            raise LimitBreach(
                f"the template ran past the render time limit of {self.limits.seconds:g} s (a loop or recursion "
                f"that does not end soon?); make it do less, or raise the limit with {RENDER_SECONDS_ENV}=SECONDS")

    def allow(self, size: float, what: str) -> None:
        """Refuse to build something of `size` characters (or items) over the size limit."""
        if size > self.limits.max_chars:
            raise LimitBreach(
                f"the template would build more than the render size limit of {self.limits.max_chars:,} characters "
                f"({what}); make it produce less, or raise the limit with {RENDER_MAX_CHARS_ENV}=N")

    def output(self, value: Any) -> Any:
        """Count text a template writes (to the result or to a macro's or block's capture)."""
        self.tick()
        self.produced += self.size_of(value)
        self.allow(self.produced, "text written")
        return value

    def check(self, value: Any, what: str) -> Any:
        """A value that may be kept (a literal list, a call's result) fits the size limit."""
        self.allow(self.size_of(value), what)
        return value

    def materialize(self, items: Iterable[Any], what: str) -> list[Any]:
        """A lazy sequence made a list, refused as soon as its items add up to more than the limit."""
        kept, total = [], 0
        for item in items:
            self.tick()
            total += self.size_of(item)
            self.allow(total, what)
            kept.append(item)
        return kept

    def size_of(self, value: Any) -> int:
        """About how many characters `value` becomes as text, counting every repeat of a shared part."""
        if isinstance(value, str):
            return len(value)
        return self._size(value, frozenset())

    def _size(self, value: Any, active: frozenset[int]) -> int:
        if isinstance(value, str | bytes | bytearray):
            return len(value)
        if isinstance(value, bool) or value is None:
            return 1
        if isinstance(value, int):
            return value.bit_length() * 30103 // 100000 + 1
        if isinstance(value, Namespace):  # mutable: measured each time, never cached
            if id(value) in active:
                return 1
            attrs = value._Namespace__attrs  # type: ignore[attr-defined]
            return self._total(itertools.chain.from_iterable(attrs.items()), active | {id(value)})
        if not isinstance(value, list | tuple | dict | set | frozenset):
            return 1
        cached = self._sizes.get(id(value))
        if cached is not None and cached[0] is value:
            return cached[1]
        items = itertools.chain.from_iterable(value.items()) if isinstance(value, dict) else value
        size = self._total(items, active)
        self._sizes[id(value)] = (value, size)  # the value is kept alive, so its id is not reused
        return size

    def _total(self, items: Iterable[Any], active: frozenset[int]) -> int:
        total = 1
        for item in items:
            total += self._size(item, active)
            if total > self.limits.max_chars:  # enough to refuse; measuring on would only cost time
                return total
        return total


_CURRENT: ContextVar[Budget | None] = ContextVar("workbench_render_budget", default=None)


def current_budget() -> Budget:
    """The budget of the render in progress (size limits without a deadline outside a render)."""
    budget = _CURRENT.get()
    if budget is None:
        budget = Budget(RenderLimits(seconds=float("inf"), max_chars=RenderLimits.from_env().max_chars))
    return budget


def start_budget(limits: RenderLimits) -> Callable[[], None]:
    """Begin a render's budget in this thread or task; returns the function that ends it."""
    token = _CURRENT.set(Budget(limits))
    return lambda: _CURRENT.reset(token)


# -- estimates made before an operation runs ---------------------------------------------------------

_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _largest(values: Iterable[Any], budget: Budget) -> int:
    return max((budget.size_of(v) for v in values), default=0)


def _ints(values: Iterable[Any]) -> list[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def check_printf(template: str | bytes, args: Any, budget: Budget) -> None:
    """`template % args`: widths, precisions and every repeat of the largest argument fit the limit."""
    text = template.decode("latin-1") if isinstance(template, bytes) else str(template)
    values = list(args.values()) if isinstance(args, dict) else list(args) if isinstance(args, tuple) else [args]
    specs = _PRINTF_SPEC.findall(text)
    widths = [int(n) for spec in specs for n in spec if n.isdigit()]
    if any("*" in spec for spec in specs):
        widths += [abs(v) for v in _ints(values)]
    largest = _largest(values, budget)
    for width in widths:
        budget.allow(width, f"a field width of {width:,}")
    budget.allow(len(text) + len(specs) * largest + sum(widths), "a %-format")


def check_str_format(template: str, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget) -> None:
    """`template.format(...)`: field widths (also nested ones) and every repeat of the largest argument."""
    values = [*args, *kwargs.values()]
    fields = list(string.Formatter().parse(template))
    widths = [int(n) for _, name, spec, _ in fields if name is not None and spec for n in re.findall(r"\d+", spec)]
    if any(spec and "{" in spec for _, _, spec, _ in fields):
        widths += [abs(v) for v in _ints(values)]
    for width in widths:
        budget.allow(width, f"a field width of {width:,}")
    count = sum(1 for _, name, _, _ in fields if name is not None)
    budget.allow(len(template) + count * _largest(values, budget) + sum(widths), "a .format()")


def string_method_size(text: str | bytes, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    """About how long `text.method(*args, **kwargs)` would be, for the methods of str and bytes whose result
    can be much longer than the string (None for the others)."""
    first = args[0] if args else None
    if method in ("center", "ljust", "rjust", "zfill"):
        width = first if args else kwargs.get("width", 0)
        return max(len(text), width if isinstance(width, int) else 0)
    if method == "expandtabs":
        tabsize = first if args else kwargs.get("tabsize", 8)
        tab = "\t" if isinstance(text, str) else b"\t"
        return len(text) + text.count(tab) * (tabsize if isinstance(tabsize, int) else 0)  # type: ignore[arg-type]
    if method == "replace":
        given = dict(zip(("old", "new", "count"), args, strict=False)) | kwargs
        return replaced_size(text, given.get("old"), given.get("new"), given.get("count", -1))
    if method == "translate" and isinstance(first, dict):
        longest = max((len(v) for v in first.values() if isinstance(v, str | bytes)), default=1)
        return len(text) * max(longest, 1)
    return None


def replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    """About how long `text` is with `old` replaced by `new` (at most `count` times when count >= 0)."""
    if not isinstance(text, str | bytes) or not isinstance(old, str | bytes) or not isinstance(new, str | bytes):
        return len(str(text))
    found = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(0, len(new) - len(old))
