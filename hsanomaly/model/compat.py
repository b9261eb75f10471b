"""Whether a raster is one a model can score: same band count, and the same wavelengths
where both the model and the raster carry them."""

from ..errors import HsanomalyError
from ..io.source import MICROMETRE_GUESS

# Two centre wavelengths are "the same band" within this many nanometres, or this fraction.
TOLERANCE_NM, TOLERANCE_FRACTION = 1.0, 1e-3


def check_wavelengths(bundle, wavelengths, path):
    """Refuse, naming the first mismatching band, a raster whose band centres differ from the
    model's; rasters or models without wavelengths pass (only the band count is checked)."""
    trained = bundle.wavelengths
    if trained and max(trained) < MICROMETRE_GUESS:     # bundles written before units were read
        trained = [value * 1e3 for value in trained]
    mismatch = first_mismatch(trained, wavelengths)
    if mismatch:
        band, expected, found = mismatch
        raise HsanomalyError(
            f"{path}: band {band} is centred at {found:g} nm but the model {bundle.path} "
            f"was trained with {expected:g} nm there (another sensor or band subset?); "
            "pass --ignore-wavelengths to score it anyway")


def first_mismatch(expected, found):
    """(band number, expected, found) of the first band whose centres differ, or None; two
    lists of centres in nm (either None: nothing to compare)."""
    if not expected or not found or len(expected) != len(found):
        return None
    for band, (a, b) in enumerate(zip(expected, found), start=1):
        if abs(a - b) > max(TOLERANCE_NM, TOLERANCE_FRACTION * abs(a)):
            return band, a, b
    return None
