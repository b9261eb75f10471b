"""What ``detect_many`` does with each raster: skip it (its heatmap is finished, with the
fingerprint of the input and settings now), resume its interrupted run, or score it anew."""

import contextlib
import os

from ..errors import HsanomalyError
from ..io.exclusion import Exclusion
from ..io.source import open_source
from ..scorers import scorer_for
from .run import check_resumed_run, expected_fingerprint, why_not_kept
from .store import MANIFEST, read_manifest, remove_finished, store_path


def mask_of(src, mask):
    """The exclusion of ``mask`` that ``detect`` applies to ``src`` (``io.exclusion``), or None
    where it leaves out nothing there (features elsewhere, said by the reader); the error where
    it cannot apply (a raster mask on another grid, say), which fails that raster alone."""
    if mask is None:
        return None
    try:
        with contextlib.closing(open_source(src)) as source:
            shape = (source.height, source.width)
        exclusion = Exclusion(mask, src, shape, required=False)
        return exclusion if exclusion.count else None
    except HsanomalyError as err:
        return err


def batch_state(src, dst, score, model, tile, options, exclusion=None):
    """What ``detect_many`` does with ``dst``: "skip" it (finished, with the fingerprint of
    ``src`` scored now), "resume" its interrupted run of that fingerprint (or one whose
    manifest the user may not read: ``detect`` says so), or "score" it from the start
    (another run's tiles could never be used; resuming them would fail every time).
    ``model``: the one given, or the quick model ``detect`` would train for ``dst``."""
    store = store_path(dst)
    if not (store.exists() or dst.exists()):
        return "score"           # nothing earlier: no fingerprint to compute before detect does
    if (store / MANIFEST).exists() and not os.access(store / MANIFEST, os.R_OK):
        return "resume"
    scorer = scorer_for(score, options, model)       # its options were checked: builds
    try:
        with _masked(src, exclusion) as source:
            expected = expected_fingerprint(source, scorer, tile=tile)
            finished = why_not_kept(src, source, scorer, {"score": (dst, 1)}, expected) is None
    except Exception:            # anything wrong with the input or model: detect will say what
        if not store.exists():
            return "score"
        try:      # no model to fingerprint (a quick model goes with its interrupted run, or is
            with _masked(src, exclusion) as source:              # damaged): its settings tell
                check_resumed_run(source, dst, scorer, tile=tile)
        except Exception:
            return "score"
        return "resume"
    if finished:
        remove_finished(store, expected)     # left by a commit that a later write finished
        return "skip"
    return "resume" if store.exists() and read_manifest(store).get("fingerprint") == expected \
        else "score"


@contextlib.contextmanager
def _masked(src, exclusion):
    """``src`` as the batch scores it: the path, or where ``exclusion`` (read once, in
    ``mask_of``) leaves pixels out, its source with the exclusion."""
    if exclusion is None:
        yield src
        return
    with contextlib.closing(open_source(src)) as source:
        source.exclusion = exclusion
        yield source
