"""The Jinja sandbox every template renders in: prompt bodies, framings, scored-as texts, transcripts,
and (in a copy set up like transformers') chat templates before transformers renders them.

Templates come from YAML files and checkpoints anyone may share, so they run in an immutable
sandbox: a file can fill slots and use plain filters, never reach Python internals. `SANDBOX` (the
workbench's own templates) also has StrictUndefined, so a missing variable is an error rather than
an empty string.

Every render also has a budget (`limits`): about 2 s and a million characters by default. The
sandbox rewrites each parsed template so that loops, `~` joins, list and dict literals and every
piece of output pass through checks, and it checks calls, filters, attribute access and the
operators `*`, `+`, `**` and `%` before they run. Breaching the budget is a `RenderLimitError` that
names the place, the limit and how to raise it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

from jinja2 import StrictUndefined, meta, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.runtime import str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from workbench.errors import WorkbenchError
from workbench.guarded.limits import (
    MAX_INT_BITS,
    QUADRATIC_WORK_FACTOR,
    LimitBreach,
    RenderLimitError,
    RenderLimits,
    check_printf,
    check_str_format,
    current_budget,
    replaced_size,
    start_budget,
    string_method_size,
)

__all__ = [
    "SANDBOX",
    "json_within_limits",
    "LimitBreach",
    "LimitedSandbox",
    "RenderLimitError",
    "RenderLimits",
    "render_source",
    "render_template",
    "template_slots",
]

COMPILED_CACHE_SIZE = 512  # compiled templates kept, by source
COMPILED_CACHE_MAX_SOURCE = 100_000  # longer templates are compiled each time rather than kept
_SCOPE_KWARGS = ("_loop_vars", "_block_vars")  # what Jinja passes along to context.call, not the callee


class _Guards(NodeTransformer):
    """Route loops, `~`, literals and output through the budget (Jinja has no hooks for them).

    Each becomes a call of a helper filter whose name no template can write; the helpers take the
    context, so Jinja never runs them at compile time (constant folding), only when rendering.
    """

    def _guarded(self, helper: str, node: nodes.Node, first: nodes.Expr, *rest: nodes.Expr) -> nodes.Filter:
        call = nodes.Filter(first, helper, list(rest), [], None, None)
        return call.set_lineno(node.lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = self._guarded(_LOOP, node, node.iter)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        node = self.generic_visit(node)
        node.nodes = [self._guarded(_OUTPUT, child, child) for child in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return self._guarded(_CONCAT, node, *node.nodes)

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        node = self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":  # an assignment target such as `for a, b in ...`
            return node
        return self._guarded(_LITERAL, node, node)

    visit_List = visit_Tuple = visit_Dict = _literal


_LOOP, _OUTPUT, _CONCAT, _LITERAL = "workbench:loop", "workbench:output", "workbench:concat", "workbench:literal"


@pass_context
def _guarded_iter(context: Any, iterable: Any) -> Iterator[Any]:
    """A loop's items, checking the deadline before each."""
    budget = current_budget()
    for item in iterable:
        budget.tick()
        yield item


@pass_context
def _counted_output(context: Any, value: Any) -> Any:
    """A piece of output (to the result or to a capture), counted against the size limit."""
    return current_budget().output(value)


@pass_context
def _checked_concat(context: Any, *parts: Any) -> str:
    """`a ~ b ~ ...`, refused before joining when the parts add up to more than the limit."""
    budget = current_budget()
    budget.tick()
    budget.allow(sum(budget.size_of(part) for part in parts), "a ~ join")
    return str_join(parts)


@pass_context
def _checked_literal(context: Any, value: Any) -> Any:
    """A list, tuple or dict written in the template, its shared parts counted each time they appear."""
    budget = current_budget()
    budget.tick()
    return budget.check(value, "a list or dict")


_HELPERS = {_LOOP: _guarded_iter, _OUTPUT: _counted_output, _CONCAT: _checked_concat, _LITERAL: _checked_literal}


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with a per-render budget on time and size (see workbench.guarded.limits)."""

    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _guard_filter(name, fn) for name, fn in self.filters.items()}
        self.filters["tojson"] = _tojson
        self.filters.update(_HELPERS)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _Guards().visit(super()._parse(source, name, filename))
        tree.set_environment(self)
        return tree

    # -- the sandbox's own hooks ------------------------------------------------------------------

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Call from a template: deadline, arguments and the size of what would be built checked first."""
        budget = current_budget()
        budget.tick()
        given = {k: v for k, v in kwargs.items() if k not in _SCOPE_KWARGS}
        for value in (*args, *given.values()):
            budget.check(value, "an argument")
        args = _check_call(obj, args, given)
        return budget.check(super().call(context, obj, *args, **kwargs), "a call's result")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """`*`, `+`, `**` and `%` refused before they would build something over the limit."""
        budget = current_budget()
        budget.tick()
        _check_binop(operator, left, right)
        return budget.check(super().call_binop(context, operator, left, right), f"the result of {operator}")

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Attribute access, with the deadline checked."""
        current_budget().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """Item access, with the deadline checked."""
        current_budget().tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`'...'.format(...)`: widths and repeats checked before formatting."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template, is_map = value.__self__, value.__name__ == "format_map"

        @functools.wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            given = args[0] if is_map and args and isinstance(args[0], dict) else kwargs
            check_str_format(template, () if is_map else args, given, current_budget())
            return wrapped(*args, **kwargs)

        return checked


def _size(value: Any) -> int:
    return current_budget().size_of(value)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    budget = current_budget()
    sequences = (str, bytes, list, tuple)
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, sequences) and isinstance(times, int):
                budget.allow(_size(seq) * max(times, 0), f"a {type(seq).__name__} repeated {times:,} times")
        if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            budget.allow(float("inf"), f"a product over {MAX_INT_BITS:,} bits")
    elif operator == "+" and isinstance(left, sequences) and isinstance(right, sequences):
        budget.allow(_size(left) + _size(right), "a + join")
    elif operator == "**" and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        if left.bit_length() * right > MAX_INT_BITS:
            budget.allow(float("inf"), f"a power over {MAX_INT_BITS:,} bits")
    elif operator == "%" and isinstance(left, str | bytes):
        check_printf(left, right, budget)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a call whose result would be over the limit; returns the arguments to call with."""
    budget = current_budget()
    bound, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if isinstance(bound, str | bytes):
        if name == "join" and args:  # the separator is repeated between every item
            items = budget.materialize(args[0], "the items to join")
            budget.allow(sum(map(_size, items)) + len(bound) * max(len(items) - 1, 0), "a join")
            return (items, *args[1:])
        size = string_method_size(bound, name, args, kwargs)
        if size is not None:
            budget.allow(size, f"str.{name}")
    elif _is_int(bound) and name == "to_bytes":
        budget.allow(_int_arg(args, kwargs, "length", 1), "int.to_bytes")
    elif obj is generate_lorem_ipsum:
        n, maximum = _int_arg(args, kwargs, "n", 5), _int_arg(args[3:], kwargs, "max", 100)
        budget.allow(max(n, 0) * max(maximum, 0) * 12, "lipsum")
    return args


def _int_arg(args: tuple[Any, ...], kwargs: dict[str, Any], name: str, default: int) -> int:
    value = args[0] if args else kwargs.get(name, default)
    return value if _is_int(value) else default


# -- filters ---------------------------------------------------------------------------------------

def _filter_size(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float | None:
    """About how big a builtin filter's result would be, for those that can grow their input."""
    given = kwargs.get
    first = args[0] if args else None
    if name == "center":
        return max(_size(value), first if _is_int(first) else given("width", 80))
    if name == "indent":
        width = first if args else given("width", 4)
        width = width if _is_int(width) else len(str(width))
        return _size(value) + (str(value).count("\n") + 1) * max(width, 0)
    if name == "wordwrap":
        width = first if _is_int(first) else given("width", 79)
        wrap = args[2] if len(args) > 2 else given("wrapstring") or "\n"
        text = str(value)
        return len(text) + (len(text) // max(width, 1) + text.count("\n") + 1) * len(str(wrap))
    if name == "replace":
        named = dict(zip(("old", "new", "count"), args, strict=False)) | kwargs
        return replaced_size(str(value), named.get("old"), named.get("new"), named.get("count", -1))
    if name == "format":
        check_printf(str(value), kwargs or args, current_budget())
    if name == "pprint":  # indentation and a line per item
        return _size(value) * 8
    if name in ("batch", "slice"):
        count = first if _is_int(first) else given("linecount", given("slices", 0))
        fill = args[1] if len(args) > 1 else given("fill_with")
        return max(count, 0) * (1 + (_size(fill) if fill is not None else 0))
    return None


def _guard_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """A builtin filter with the budget checked before (sizes it can predict) and after (its result)."""
    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0  # a context comes first

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.tick()
        value, rest = (args[skip], args[skip + 1:]) if len(args) > skip else (None, ())
        for given in (value, *rest, *kwargs.values()):
            budget.check(given, f"the input of |{name}")
        if name == "join":
            items = budget.materialize(value, "the items to join")
            separator = rest[0] if rest else kwargs.get("d", "")
            budget.allow(sum(map(_size, items)) + _size(separator) * max(len(items) - 1, 0), "|join")
            args = (*args[:skip], items, *rest)
        elif name == "sum":
            items = budget.materialize(value, "the items to sum")
            start = rest[1] if len(rest) > 1 else kwargs.get("start", 0)
            if not isinstance(start, int | float):  # lists and tuples are copied at every item
                work = len(items) * (_size(start) + sum(map(_size, items)))
                budget.allow(work / QUADRATIC_WORK_FACTOR, "|sum over lists")
            args = (*args[:skip], items, *rest)
        size = _filter_size(name, value, rest, kwargs)
        if size is not None:
            budget.allow(size, f"|{name}")
        result = original(*args, **kwargs)
        if isinstance(result, Iterator):  # map, select, batch, ...: made a list, item by item
            result = budget.materialize(result, f"the items of |{name}")
        return budget.check(result, f"the result of |{name}")

    return guarded


def _tojson(value: Any, indent: int | str | None = None) -> Markup:
    """The tojson filter, encoded piece by piece so an indent cannot build text past the limit."""
    text = json_within_limits(value, indent=indent, sort_keys=True)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, escaped)
    return Markup(text)


def json_within_limits(value: Any, indent: int | str | None = None, **options: Any) -> str:
    """`json.dumps(value, indent=indent, **options)` within the render's budget: the indent times the
    depth is checked first, then the text piece by piece (`options` are json.JSONEncoder's)."""
    budget = current_budget()
    budget.check(value, "the input of |tojson")
    if indent is not None:  # each line starts with the indent times its depth
        width = indent if isinstance(indent, int) else len(str(indent))
        budget.allow(max(width, 0) * _depth(value), f"|tojson(indent={width})")
    pieces, total = [], 0
    for piece in json.JSONEncoder(indent=indent, **options).iterencode(value):
        budget.tick()
        total += len(piece)
        budget.allow(total, "|tojson")
        pieces.append(piece)
    return "".join(pieces)


def _depth(value: Any) -> int:
    """How deeply lists and dicts nest in `value` (shared parts measured once)."""
    seen: dict[int, int] = {}

    def depth(item: Any) -> int:
        if not isinstance(item, list | tuple | dict):
            return 0
        if id(item) not in seen:
            seen[id(item)] = 0  # a value inside itself counts once
            children = item.values() if isinstance(item, dict) else item
            seen[id(item)] = 1 + max(map(depth, children), default=0)
        return seen[id(item)]

    try:
        return depth(value)
    except RecursionError:
        raise LimitBreach("a value nested too deeply to write as JSON") from None


# -- rendering -------------------------------------------------------------------------------------

SANDBOX = LimitedSandbox(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


@functools.lru_cache(maxsize=COMPILED_CACHE_SIZE)
def _cached(environment: LimitedSandbox, source: str) -> Any:
    return environment.from_string(source)


def _compiled(environment: LimitedSandbox, source: str) -> Any:
    if len(source) <= COMPILED_CACHE_MAX_SOURCE:
        return _cached(environment, source)
    return environment.from_string(source)


def template_slots(source: str) -> set[str]:
    """The variable names a template uses; ValueError when it does not parse (for pydantic validators)."""
    try:
        return set(meta.find_undeclared_variables(SANDBOX.parse(source)))
    except TemplateError as exc:
        raise ValueError(f"template does not parse: {exc}") from None
    except RecursionError:
        raise ValueError("template does not parse: it nests too deeply") from None


def render_source(source: str, variables: dict[str, Any], limits: RenderLimits | None = None,
                  environment: LimitedSandbox = SANDBOX) -> str:
    """Render a template in `environment` within `limits` (default: RenderLimits.from_env()); jinja's errors,
    and LimitBreach for a spent budget, pass through. Most callers want `render_template`."""
    limits = limits or RenderLimits.from_env()
    end = start_budget(limits)
    try:
        budget = current_budget()
        budget.allow(len(source), "the template itself")
        template = _compiled(environment, source)
        return "".join(template.generate(**variables))
    finally:
        end()


def render_template(source: str, variables: dict[str, Any], where: str, limits: RenderLimits | None = None) -> str:
    """Fill a template in the sandbox; every failure is a WorkbenchError that names `where` and the fix."""
    limits = limits or RenderLimits.from_env()
    try:
        return render_source(source, variables, limits)
    except LimitBreach as exc:
        raise RenderLimitError(f"{where}: {exc}") from None
    except SecurityError as exc:
        raise WorkbenchError(
            f"{where}: the template reaches for Python internals ({_one_line(exc)}); templates may only fill "
            "{{ variables }} and use plain filters"
        ) from None
    except UndefinedError as exc:
        raise WorkbenchError(f"{where}: template variable missing ({exc}); add it to variables or grid") from None
    except TemplateError as exc:
        raise WorkbenchError(f"{where}: template error ({_one_line(exc)})") from None
    except RecursionError:
        raise WorkbenchError(f"{where}: the template recurses or nests too deeply (a macro that calls itself "
                             "without end?); make it stop sooner") from None
    except MemoryError:
        raise RenderLimitError(f"{where}: the template ran out of memory; make it build less") from None
    except Exception as exc:  # noqa: BLE001 (a template's own arithmetic or type error, reported in one line)
        raise WorkbenchError(f"{where}: template error ({type(exc).__name__}: {_one_line(exc)})") from None


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

