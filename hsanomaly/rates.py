"""A false-alarm rate: the check every door applies to one, and the number of pixels it allows.

Thresholds (``thresholds``), targets and the evaluation's detection rate all count false alarms
the same way, so a rate means the same pixels wherever it is given.
"""

import math
import numbers

from .errors import HsanomalyError
from .options import is_real


def rate_count(rate, n):
    """How many of ``n`` pixels a false-alarm ``rate`` allows: floor(rate * n), where the
    product is taken as the whole number it stands for (0.29 * 100 is 28.999... in floats):
    a few units in its last place (a slack of 1e-12 allowed a pixel too many beyond 1e10)."""
    return min(math.floor(rate * n * (1 + 8 * EPSILON)), max(n - 1, 0))


EPSILON = 2.0 ** -52      # float64's: the rate and its product with n are each rounded once


def as_number(value):
    """``value`` as a float where it is a number that converts to one (a Fraction, a Decimal,
    a 0-d numpy array, a torch scalar: what the ``SupportsFloat`` hints allow), else as it
    is: a numpy number (a float32 is taken as written), or what the check that follows
    refuses."""
    if isinstance(value, (str, bytes, bool)) or getattr(value, "ndim", 0) != 0 or \
            not hasattr(value, "__float__") or (isinstance(value, numbers.Real)
                                                and hasattr(value, "dtype")):
        return value
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return value


def check_rate(label, value, auto=False):
    """A false-alarm rate in (0, 1) as a float (or "auto", where ``auto`` allows it, in any
    case); text that reads as a number is taken, as a command line or a QGIS field gives it."""
    if auto and isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    rate = as_number(value)
    if isinstance(value, str):
        try:
            rate = float(value)
        except ValueError:
            rate = None
    if not is_real(rate) or not 0 < rate < 1:
        shown = repr(value) if isinstance(value, str) or not is_real(rate) else value
        comma = isinstance(value, str) and "," in value and rate is None
        raise HsanomalyError(f"{label} must be a false-alarm rate in (0, 1)"
                             f"{' or auto' if auto else ''}, got {shown}"
                             + ("; write its decimals after a point (0.01)" if comma else ""))
    if getattr(getattr(rate, "dtype", None), "itemsize", 8) < 8:   # numpy's float32 0.001:
        rate = str(rate)             # as written, not 0.0010000000474974513 in the records
    return float(rate)
