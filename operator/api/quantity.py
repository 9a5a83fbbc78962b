"""PURE: Kubernetes resource quantities ("500m", "2", "4Gi", "1e9", "1500M") as exact numbers.

Called by the ServeCluster models (to refuse a quantity the API server would refuse in a Pod) and by the pod
builder (to turn a container's resources into `ray start` flags). The grammar is apimachinery's
`resource.Quantity`: a signed decimal number, then a binary-SI suffix (Ki..Ei), a decimal-SI suffix (n, u, m, k..E)
or a decimal exponent (e3, E-2). Whatever the input, `parse` raises nothing but ValueError.
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
# apimachinery caps a quantity's magnitude at the largest int64 (so the Pod would not get what was written);
# such a quantity, like "1e1000000", is refused here as out of range.
LIMIT = 2**63 - 1
# Past this decimal exponent any number but zero is out of range (or far below a nano): reading a longer one is
# not needed, and Python refuses to read integers of more than 4,300 digits.
_EXPONENT_BOUND = 1000
_EXAMPLES = "e.g. 500m, 2, 4Gi, 1e9"


def parse(value: str | int | float) -> Decimal:
    """The quantity's exact value (cores, bytes, devices); ValueError if Kubernetes would not accept it or would
    cap it (its magnitude reaches 2^63-1)."""
    # YAML turns `cpu: 2` and `cpu: 0.5` into numbers; the API server stores them as they are.
    text = value if isinstance(value, str) else repr(value)
    match = _QUANTITY.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{shown(value)} is not a Kubernetes quantity ({_EXAMPLES})")
    number, suffix = Decimal(match["number"]), match["suffix"]
    try:
        if suffix in _BINARY:
            exact = number * _BINARY[suffix]
        else:
            exact = number.scaleb(_DECIMAL[suffix] if suffix in _DECIMAL else _exponent(suffix[1:]))
    except ArithmeticError:  # decimal's Overflow and InvalidOperation (a mantissa of a million digits)
        exact = Decimal("Infinity")
    if not exact.is_finite() or abs(exact) >= LIMIT:
        raise ValueError(f"{shown(value)} is out of range: its magnitude must stay below 2^63-1 ({_EXAMPLES})")
    return exact


def shown(value: object) -> str:
    """The value as an error message quotes it, cut to a bound."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _exponent(text: str) -> int:
    """A decimal exponent's value, clamped to +-_EXPONENT_BOUND."""
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > len(str(_EXPONENT_BOUND)):
        return -_EXPONENT_BOUND if text.startswith("-") else _EXPONENT_BOUND
    return max(-_EXPONENT_BOUND, min(_EXPONENT_BOUND, int(text)))


def ceil_int(value: str | int | float) -> int:
    """The quantity rounded up to a whole number, as apimachinery's `Quantity.Value()` (so 500m cpu is 1)."""
    return math.ceil(parse(value))
