"""How a message names an argument: as the front door in use spells it (and how it counts).

The library's checks run behind every door, so a message names an argument with
``spell("neighbour_weight")``: a Python caller reads ``'neighbour_weight'``, the command line
``--neighbour-weight`` (``SRC`` for an argument it takes by position), QGIS its dialog's field.
The command line and QGIS choose their spelling for the duration of a call (``spelled``); the
engine's threads and Dask's workers carry it with their tasks (``current``).
"""

import contextlib
import contextvars
import shlex

PYTHON = None
_SPELLING = contextvars.ContextVar("hsanomaly_spelling", default=PYTHON)


def command_line(names):
    """The command line's spelling: ``names`` maps a keyword to its flag or argument
    (``{"tile": "--tile", "src": "SRC"}``); a keyword it lacks is spelt ``--key-word``."""
    return ("cli", dict(names))


def fields(labels):
    """A dialog's spelling: ``labels`` maps a keyword to its field's label; a keyword without
    a field is named as from Python, and said to be (``resume=True (from Python)``)."""
    return ("fields", dict(labels))


def python_but(names):
    """Python's spelling but for ``names``: a keyword -> how this door does the same thing
    without it."""
    return ("python", dict(names))


# a Detector takes no mask: its input's own mask (a masked array) or NaN leaves pixels out
DETECTOR = python_but({"mask": "as a masked array or NaN"})


def current():
    """The spelling in use, to hand to ``spelled`` in another thread or process."""
    return _SPELLING.get()


@contextlib.contextmanager
def spelled(spelling):
    """Name arguments as ``spelling`` does (PYTHON, ``command_line`` or ``fields``) while the
    block runs."""
    token = _SPELLING.set(spelling)
    try:
        yield
    finally:
        _SPELLING.reset(token)


def spell(name, value=None, *, placeholder=None, python=None):
    """Keyword argument ``name`` as the door in use spells it, with ``value`` after it if given
    (True for a switch) or else a ``placeholder`` (``N``). ``python``: how a Python caller
    names it where that is not the keyword (``extras['recon']``)."""
    kind, table = _SPELLING.get() or (None, {})
    if kind == "cli":
        shown = table.get(name) or "--" + name.replace("_", "-")
        after = placeholder if value is None else shlex.quote(str(value))   # as typed
        return shown if after is None or value is True or not shown.startswith("-") \
            else f"{shown} {after}"
    if kind == "python" and name in table:
        return table[name]
    if kind == "fields":
        if name in table:                       # a field shows its value itself
            return f"'{table[name]}'" if value is None or value is True else \
                f"'{table[name]}' ({value})"
        return f"{_in_python(name, value, placeholder, python)} (from Python)"  # no field
    return _in_python(name, value, placeholder, python)


def takes(name):
    """Whether the door in use can be given argument ``name``: a dialog only where it has a
    field for it, so a remedy it cannot follow is left out of its messages."""
    kind, table = _SPELLING.get() or (None, {})
    return kind != "fields" or name in table


def either(*remedies):
    """Remedies joined as "a, b or c", less those the door in use cannot follow: each a text,
    or (text, argument) for one that sets ``argument`` (``takes``)."""
    texts = [r if isinstance(r, str) else r[0] for r in remedies
             if isinstance(r, str) or takes(r[1])]
    return " or ".join(filter(None, [", ".join(texts[:-1]), *texts[-1:]]))


def _in_python(name, value=None, placeholder=None, python=None):
    """As a Python caller writes it: ``'tile'``, ``refine=2``, ``refine=N``."""
    shown = python or name
    if value is not None or placeholder is not None:
        return f"{shown}={placeholder if value is None else repr(value)}"
    return f"'{shown}'" if shown.isidentifier() else shown     # as scikit-learn names them


def nearest(word, choices):
    """The one of ``choices`` closest to a ``word`` that is none of them (a typo, "neighbor"
    for "neighbour", "RX" for "rx"), or None when none is close."""
    import difflib

    choices = list(choices)
    by_case = {str(choice).lower(): choice for choice in choices}
    if str(word).lower() in by_case:
        return by_case[str(word).lower()]
    match = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return match[0] if match else None


def closest(word, choices, *, name=repr):
    """"did you mean X? " for ``nearest(word, choices)``, shown by ``name``; "" for none."""
    match = nearest(word, choices)
    return f"did you mean {name(match)}? " if match is not None else ""


def kind_of(value):
    """A value's type with its article, as messages say what was given: "a dict", "an int",
    "None"."""
    if value is None:
        return "None"
    name = type(value).__name__
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def counted(n, noun, plural=None):
    """``n`` things in words: "1 tile", "2 tiles", "16,384 pixels"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def some_of(items, most):
    """The first ``most`` of ``items`` for a message, and how many more: "a, b and 3 more"."""
    items = list(items)
    more = f" and {counted(len(items) - most, 'more', plural='more')}" if len(items) > most else ""
    return ", ".join(map(str, items[:most])) + more


def listed(items, most=8):
    """The first ``most`` of ``items`` for a message, "106, 107, 147, ..." where there are more."""
    items = list(items)
    return ", ".join(map(str, items[:most])) + (", ..." if len(items) > most else "")


def submit(pool, fn, *args):
    """``pool.submit(fn, *args)`` in a copy of the caller's context: a thread of the pool
    names arguments as the caller's door does (and counts its warnings in the caller's job)."""
    return pool.submit(contextvars.copy_context().run, fn, *args)
