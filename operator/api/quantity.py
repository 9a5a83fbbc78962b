"""PURE: Kubernetes resource quantities ("500m", "2", "4Gi", "1e9", "1500M") as exact numbers.

Called by the ServeCluster models (to refuse a quantity the API server would refuse in a Pod) and by the pod
builder (to turn a container's resources into `ray start` flags). The grammar is apimachinery's
`resource.Quantity`: a signed decimal number, then a binary-SI suffix (Ki..Ei), a decimal-SI suffix (n, u, m, k..E)
or a decimal exponent (e3, E-2).
"""
from __future__ import annotations

import math
import re
from decimal import Decimal

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# The exponent is tried before the one-letter suffixes so that "1E3" is 1000 while "1E" is one exa.
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|[numkMGTPE]?)"
)


def parse(value: str | int | float) -> Decimal:
    """The quantity's exact value (cores, bytes, devices); ValueError if Kubernetes would not accept it."""
    # YAML turns `cpu: 2` and `cpu: 0.5` into numbers; the API server stores them as they are.
    text = value if isinstance(value, str) else repr(value)
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 4Gi, 1e9)")
    number, suffix = Decimal(match["number"]), match["suffix"]
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(suffix[1:]))


def ceil_int(value: str | int | float) -> int:
    """The quantity rounded up to a whole number, as apimachinery's `Quantity.Value()` (so 500m cpu is 1)."""
    return math.ceil(parse(value))
