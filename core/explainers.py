"""Registry of explanation methods: a new method is one module in core/ plus one entry here.

Each entry: method name -> (family, computation, default params). Methods of one family share
one computation and so one cache entry (Grad-CAM and Grad-CAM++).
"""
from __future__ import annotations

from dataclasses import dataclass

from core.explanation import Computation


@dataclass(frozen=True)
class Method:
    name: str
    label: str          # what a person sees
    family: str         # methods of one family come from one computation
    compute: Computation
    defaults: dict


METHODS: dict[str, Method] = {}


def register(method: Method) -> None:
    METHODS[method.name] = method
