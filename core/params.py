"""Every parameter, declared once: name, type, range or choices, default, help.

The CLI flags (`add_argument`), the page controls' ranges and defaults (components/), the
server-side validation of every callback input and CLI value (`validate`, `check`) and the cache
key (the validated, defaults-filled dict) all come from these declarations. A value out of range is
refused with a ParamError whose message is a plain sentence for the person, before any work starts.

Ranges that depend on the loaded model or image (a layer among the model's layers, a query among
its query slots, its decoder layers) name a key of a `context` dict:
`choices_from` / `max_from`. Without that key in the context the value is only type-checked.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence


class ParamError(ValueError):
    """A parameter out of its declared range; the message is meant for the person who sent it."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str                       # "int" | "float" | "choice" | "str" | "bool"
    default: Any
    help: str
    label: str = ""                 # what the page calls it (default: the name)
    min: float | None = None
    max: float | None = None
    choices: tuple = ()             # "choice": the allowed values
    auto: bool = False              # also accepts the string "auto"
    optional: bool = False          # also accepts None ("use the model's own": layer, resolution, dropout)
    choices_from: str | None = None  # context key holding the allowed values (e.g. "layers")
    max_from: str | None = None      # context key holding the upper bound (e.g. "max_query")
    flag: str | None = None          # CLI flag when it is not --<name with dashes>
    presets: tuple = ()              # values the page offers in a dropdown ("auto"-able counts)
    step: float | None = None        # the page control's step

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def describe_range(self, context: dict | None = None) -> str:
        context = context or {}
        if self.kind == "choice" or self.choices_from:
            options = list(context.get(self.choices_from, ())) if self.choices_from else list(self.choices)
            return "one of " + ", ".join(map(str, options)) if options else "a known value"
        hi = context.get(self.max_from, self.max) if self.max_from else self.max
        text = f"{_fmt(self.min)}..{_fmt(hi)}" if self.min is not None and hi is not None else (
            f">= {_fmt(self.min)}" if self.min is not None else f"<= {_fmt(hi)}" if hi is not None else self.kind)
        return text + (" or auto" if self.auto else "")

    def check(self, value: Any, context: dict | None = None) -> Any:
        """The value converted to the declared type, or ParamError saying what is allowed."""
        context = context or {}
        if value is None or value == "":
            if self.optional:
                return None
            if value is None:
                return self.default
        if self.auto and value == "auto":
            return "auto"
        if self.kind == "choice" or self.choices_from:
            allowed = context.get(self.choices_from) if self.choices_from else self.choices
            if allowed is not None and value not in tuple(allowed):
                raise ParamError(f"{self.label or self.name} must be {self.describe_range(context)}; got {value!r}.")
            return value
        try:
            if self.kind == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                converted = int(value)
            elif self.kind == "float":
                if isinstance(value, bool):
                    raise ValueError
                converted = float(value)
                if not math.isfinite(converted):
                    raise ValueError
            elif self.kind == "bool":
                if not isinstance(value, bool):
                    raise ValueError
                converted = value
            else:
                converted = str(value)
        except (TypeError, ValueError):
            raise ParamError(f"{self.label or self.name} must be {self.describe_range(context)}; "
                             f"got {value!r}.") from None
        hi = context.get(self.max_from, self.max) if self.max_from else self.max
        if (self.min is not None and converted < self.min) or (hi is not None and converted > hi):
            raise ParamError(f"{self.label or self.name} must be {self.describe_range(context)}; got {value!r}.")
        return converted


def _fmt(v) -> str:
    return "?" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def defaults(params: Iterable[Param]) -> dict:
    return {p.name: p.default for p in params}


def validate(params: Sequence[Param], values: dict | None, context: dict | None = None,
             strict: bool = True) -> dict:
    """The full parameter dict (defaults filled in, types converted): what a method runs with and
    what its cache key holds. strict: an unknown name is refused (a forged request)."""
    values = dict(values or {})
    known = {p.name: p for p in params}
    unknown = sorted(set(values) - set(known))
    if unknown and strict:
        raise ParamError(f"Unknown parameter(s): {', '.join(unknown)}.")
    return {name: p.check(values.get(name, p.default), context) for name, p in known.items()}


def add_arguments(parser: argparse.ArgumentParser, params: Iterable[Param], seen: set | None = None) -> None:
    """One CLI flag per declared parameter (default None: `validate` fills in the declared default,
    so the CLI, the page and the cache agree). `seen` skips names already added (shared params)."""
    for p in params:
        if seen is not None:
            if p.name in seen:
                continue
            seen.add(p.name)
        text = f"{p.help} ({p.describe_range()}; default: {p.default})".replace("%", "%%")  # argparse formats help
        kwargs: dict[str, Any] = {"dest": p.name, "default": None, "help": text}
        if p.kind == "bool":
            kwargs.update(action="store_true", default=None)
        else:
            kwargs["type"] = _cli_type(p)
            if p.kind == "choice" and p.choices:
                kwargs["choices"] = list(p.choices)
        parser.add_argument(p.cli_flag, **kwargs)


def _cli_type(p: Param):
    def convert(text: str):
        if p.auto and text == "auto":
            return "auto"
        if p.kind == "int":
            return int(text)
        if p.kind == "float":
            return float(text)
        return text
    convert.__name__ = p.kind  # argparse names the type in its error message
    return convert


# Parameters shared by several methods and views: declared here once, reused by reference.
TARGET = Param("target", "choice", "class", "What to explain: the detection's class score (pre-softmax logit of "
               "its label), or one coordinate of its predicted box (where it is, not what it is).",
               label="Target", choices=("class", "cx", "cy", "w", "h"))
LAYER = Param("layer", "str", None, "Backbone layer whose activations the CAM family weighs (module name as in "
              "model.named_modules()); empty: the variant's measured default.", label="Layer", optional=True,
              choices_from="layers")
SEED = Param("seed", "int", 0, "Seed of every random draw (noise baselines, masks): the same seed gives the "
             "same result.", label="Seed", min=0, max=2**31 - 1)
QUERY = Param("query", "int", None, "The detection's query slot (its index).", label="Query", min=0,
              max_from="max_query")

# Views (detection filter, MC-Dropout): the product's own UI ranges.
THRESHOLD = Param("threshold", "float", 0.7, "Filter out detections with confidence below this value.",
                  label="Confidence Threshold", min=0.0, max=1.0)
MC_SAMPLES = Param("samples", "int", 30, "Number of stochastic forward passes for uncertainty estimation. Increase "
                   "for more stable results.", label="MC Dropout Samples", min=1, max=100)
MC_DROPOUT = Param("dropout", "float", None, "Dropout rate used during MC Dropout sampling. Higher values typically "
                   "increase predictive variance. Empty: the model's trained rate.", label="Dropout Probability",
                   min=0.0, max=0.9, optional=True)
MC_SEED = Param("seed", "int", 0, "Seed of the dropout masks: the same seed gives the same samples (and is served "
                "from the cache); another seed draws new ones.", label="Seed", min=0, max=2**31 - 1)
UNCERTAINTY = (MC_SAMPLES, MC_DROPOUT, MC_SEED)

