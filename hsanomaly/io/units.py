"""Band centre wavelengths: the units their metadata give them in, as nanometres.

ENVI headers, GDAL's band metadata, .mat vectors and xarray coordinates name their units in
many spellings, or not at all; every reader turns them into nanometres here, so a model's
band check compares like with like.
"""

# Units in ENVI headers and GDAL band metadata -> factor to nanometres.
_UNITS = {"nanometers": 1.0, "nanometer": 1.0, "nm": 1.0, "micrometers": 1e3, "micrometer": 1e3,
          "microns": 1e3, "micron": 1e3, "um": 1e3, "µm": 1e3, "millimeters": 1e6,
          "millimeter": 1e6, "mm": 1e6, "centimeters": 1e7, "centimeter": 1e7, "cm": 1e7,
          "meters": 1e9, "meter": 1e9, "m": 1e9, "angstroms": 0.1, "angstrom": 0.1, "å": 0.1}
WAVENUMBERS = ("wavenumber", "wavenumbers", "cm-1", "cm^-1", "1/cm")   # 1e7 / v nanometres
NOT_LENGTHS = ("index", "band", "bands", "band number", "channel", "hz", "khz", "mhz", "ghz",
               "thz")         # band numbers or frequencies: no centre wavelengths
MICROMETRE_GUESS = 30.0   # unitless centre wavelengths all below this are taken as micrometres


def nanometres(values, units):
    """Band centres ``values`` given in ``units`` as nanometres: lengths in their units,
    wavenumbers (cm^-1) as 1e7 / v; without units (or ENVI's "Unknown", or a spelling not
    listed), micrometres where every value lies below MICROMETRE_GUESS (no sensor measures
    0.4-30 nm), else nanometres. None for units that are no length (band numbers, GHz)."""
    values = [float(v) for v in values]
    units = _unit_name(units)
    if units in WAVENUMBERS:
        return [1e7 / v if v > 0 else float("nan") for v in values]
    if units in NOT_LENGTHS or not values:
        return None
    factor = _UNITS.get(units)
    if factor is None:             # not given, ENVI's "Unknown", or a spelling not listed
        factor = 1e3 if max(values) < MICROMETRE_GUESS else 1.0
    return [v * factor for v in values]


def _unit_name(units):
    """A unit as ``_UNITS`` spells it: lower case, British "-metres" as "-meters", Greek mu
    as the micro sign, and a gloss in brackets dropped ("nm (nanometers)")."""
    text = str(units or "").strip().lower().replace("\u03bc", "\u00b5")
    text = text.split("(")[0].strip() or text
    return text.replace("metre", "meter")
