"""A steered model's recipe: parent + coefficient x direction after chosen blocks, and its inline name.

A steered model is a model spec like any other (see `ModelSpec.steering`): its identity is the
parent's plus the direction's content hash, layers, coefficient, operator, positions and units,
so its samples and scores are cached apart from the parent's. It is named either by a registry
entry (`steering: {parent: ..., direction: ..., layers: [...], coefficient: ...}`) or inline:

    PARENT@DIRECTION@L<layers>@<operator><coefficient>[@raw][@pos-<positions>]

    gemma-3-270m@wedding-embedding@L3@add0.25
    gemma-3-270m-self-preservation@self-preservation-diff@L6@ablate
    gemma-3-270m@persona-caa@L4+6@add-2@pos-all

The syntax has no comma, space, slash, colon or shell metacharacter, so it survives `--models a,b`,
the shell and file names.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workbench.direction_files import check_name
from workbench.errors import WorkbenchError

SEPARATOR = "@"
Operator = Literal["add", "ablate", "ablate-add"]
Positions = Literal["all-but-bos", "all", "response"]
Units = Literal["median-norm", "raw"]
# Bump when the reference text or the way the median norm is taken changes: coefficients in median-norm
# units then mean another vector, so steered models get a fresh cache.
NORM_REFERENCE_VERSION = "prose-v1"
SYNTAX = ("PARENT@DIRECTION@L<layers>@<operator><coefficient>[@raw][@pos-<positions>], e.g. "
          "gemma-3-270m@wedding-embedding@L3@add0.25 (layers joined by '+', operators add, ablate, ablate-add; "
          "positions all-but-bos (default), all, response)")
_OPERATOR = re.compile(r"^(ablate-add|add|ablate)([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)?$")


class Steering(BaseModel):
    """How a steered model changes its parent's residual stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parent: str = Field(description="The unsteered model (any local transformers model of the registry).")
    direction: str = Field(description="A saved direction's name (`workbench directions list`).")
    layers: tuple[int, ...] = Field(description="Blocks after which the residual stream is changed (0-based).")
    operator: Operator = Field("add", description="add: h + c*v; ablate: project v out of h; ablate-add: both.")
    coefficient: float = Field(0.0, description="Multiplier of the unit direction, in `units`.")
    units: Units = Field(
        "median-norm",
        description="median-norm: c times the layer's median residual norm over a fixed reference text, so a grid "
        "means the same at every layer; raw: c times the direction as saved.",
    )
    positions: Positions = Field(
        "all-but-bos",
        description="Which token positions are changed: all but a leading BOS (default), all, or only the "
        "generated/scored continuation's (never the prompt's).",
    )

    @field_validator("direction")
    @classmethod
    def _direction_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(layer < 0 for layer in value):
            raise ValueError("layers must be one or more block indices, 0 or above")
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _coefficient(self) -> "Steering":
        if not math.isfinite(self.coefficient):
            raise ValueError(f"coefficient must be a finite number, got {self.coefficient}")
        if self.operator == "ablate" and self.coefficient != 0:
            raise ValueError("ablate takes no coefficient (it projects the direction out); use ablate-add to also add")
        return self

    def identity(self, content_hash: str) -> dict[str, Any]:
        """What about the steering changes the output (the direction by content, not by name)."""
        return {"direction": content_hash, "layers": list(self.layers), "operator": self.operator,
                "coefficient": self.coefficient, "units": self.units, "positions": self.positions,
                "norm_reference": NORM_REFERENCE_VERSION if self.units == "median-norm" else None}

    def inline_name(self) -> str:
        """The canonical inline model name for this steering."""
        parts = [self.parent, self.direction, "L" + "+".join(str(layer) for layer in self.layers)]
        parts.append(self.operator if self.operator == "ablate" else f"{self.operator}{self.coefficient:g}")
        if self.units == "raw":
            parts.append("raw")
        if self.positions != "all-but-bos":
            parts.append(f"pos-{self.positions}")
        return SEPARATOR.join(parts)

    def describe(self) -> str:
        """One line for provenance and figure notes."""
        units = "x the layer's median residual norm" if self.units == "median-norm" else "(raw units)"
        what = ("project out" if self.operator == "ablate" else
                f"{self.operator} {self.coefficient:g} {units}")
        return (f"{self.parent} steered: {what} of direction {self.direction!r} after block(s) "
                f"{', '.join(map(str, self.layers))}, positions {self.positions}")


def is_inline_steered(name: str) -> bool:
    """Whether a model name is an inline steered model."""
    return SEPARATOR in name


def parse_inline(name: str) -> Steering:
    """The steering an inline name describes, or one error line with the syntax."""
    parts = name.split(SEPARATOR)
    if len(parts) < 4 or not all(parts):
        raise WorkbenchError(f"model name {name!r} is not a steered model; write {SYNTAX}")
    parent, direction, layers_part, operator_part, *options = parts
    fields: dict[str, Any] = {"parent": parent, "direction": direction}
    if not re.fullmatch(r"L\d+(\+\d+)*", layers_part):
        raise WorkbenchError(f"model name {name!r}: {layers_part!r} is not a layer list; write L3 or L3+6 ({SYNTAX})")
    fields["layers"] = tuple(int(x) for x in layers_part[1:].split("+"))
    match = _OPERATOR.match(operator_part)
    if not match:
        raise WorkbenchError(f"model name {name!r}: {operator_part!r} is not an operator with its coefficient; "
                             f"write add0.25, add-1, ablate or ablate-add0.5 ({SYNTAX})")
    fields["operator"] = match.group(1)
    if match.group(1) != "ablate":
        if match.group(2) is None:
            raise WorkbenchError(f"model name {name!r}: {operator_part!r} needs a coefficient, e.g. "
                                 f"{match.group(1)}0.25")
        fields["coefficient"] = float(match.group(2))
    elif match.group(2) is not None:
        raise WorkbenchError(f"model name {name!r}: ablate takes no coefficient; write ablate, or ablate-add"
                             f"{match.group(2)} to add after projecting out")
    if len(set(options)) != len(options) or sum(o.startswith("pos-") for o in options) > 1:
        raise WorkbenchError(f"model name {name!r}: give each option once (raw, one pos-...)")
    for option in options:
        if option == "raw":
            fields["units"] = "raw"
        elif option.startswith("pos-") and option[4:] in ("all-but-bos", "all", "response"):
            fields["positions"] = option[4:]
        else:
            raise WorkbenchError(f"model name {name!r}: unknown option {option!r}; options are raw and "
                                 "pos-all-but-bos, pos-all, pos-response")
    try:
        return Steering(**fields)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        reason = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
        raise WorkbenchError(f"model name {name!r}: {reason.removeprefix('Value error, ')}") from None


__all__ = [
    "NORM_REFERENCE_VERSION",
    "SEPARATOR",
    "SYNTAX",
    "Operator",
    "Positions",
    "Steering",
    "Units",
    "is_inline_steered",
    "parse_inline",
]
