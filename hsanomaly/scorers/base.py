"""The scorer contract shared by the baselines and the GAN scores.

A scorer is fitted once (``fit(source)``, which may stream over the raster with
``source.reduce`` or draw ``source.sample``) and then scores tiles independently
(``score_block``), which is what lets the tiled engine, ``--resume`` and Dask workers
treat every scorer alike. High scores mean anomalous.
"""

import copy
from typing import Optional

import numpy as np

from ..defaults import TILE
from ..errors import HsanomalyError
from ..spelling import spell


class Scorer:
    """What every score declares about itself; the registry (scorers/__init__.py) reads it."""

    name = "base"
    meaning = ""          # what the score measures, for the heatmap's band description
    needs_model = False   # takes ``model=<bundle path>``
    fits_on_scene = True  # ``fit(source)`` must run on the scene being scored
    options: tuple[str, ...] = ()   # keyword options the constructor takes, besides ``model``
    renamed_options: dict = {}      # an option's former name -> its name now (the former works)
    options_asked: Optional[dict] = None   # set by ``make_scorer``: the options as
                                           # asked, which a heatmap records for a rerun
    unscored_cause = "its value is not a number there"   # why a valid pixel may get no score
    extra_outputs: tuple[str, ...] = ()   # the optional per-pixel outputs besides "score"
    extra_bands: dict = {}          # those outputs of a built scorer: name -> band count
    model_training: dict = {}       # training options of the model trained for this score when
                                    # none is given (``hsanomaly.training.train`` keywords)
    window_from_model = False  # the footprint is the model's window: unknown until it exists
    purge = 0.0                # the share of a first pass's top pixels left out of the rings
    shares_halo = False   # ``score_block`` takes a third argument, the block's ``halo.Place``,
                          # and keeps per-pixel results its neighbouring blocks share
    keep_fit = False      # set by ``engine.fit_scorer`` for a fit that this process's scoring
                          # of the same source follows: the fit's per-pixel work is kept for
                          # the tiles (``release`` lets it go); otherwise dropped as it ends

    def extra_descriptions(self, input_bands):
        """An extra output's band descriptions, name -> one per band, given the input file's
        numbers of the bands read (bad and alpha bands left out): none by default."""
        return {}

    def __setstate__(self, state):
        """A scorer pickled under an option's former name (``renamed_options``) takes the name
        now."""
        for former, now in self.renamed_options.items():
            if former in state:
                state[now] = state.pop(former)
        self.__dict__.update(state)

    @property
    def halo(self):
        """Neighbour pixels each tile needs on every side."""
        return 0

    @property
    def model_bundle(self):
        """The model bundle this scorer reads (loading it), or None for a baseline."""
        return None

    def moved_to(self, path):
        """Read the model from ``path`` from now on (a quick model moved out of its
        temporary folder); a baseline has none."""

    def runs_on(self, device, threads):
        """This scorer, what was fitted kept, running its networks on ``device`` with
        ``threads``: a copy (a copied detector may share this one); a baseline runs none."""
        return self

    @property
    def footprint(self):
        """The widest neighbourhood (pixels across) a pixel's score looks at; it must fit
        the image. (A tile's region is its window; a training patch, the model's window.)"""
        return 2 * self.halo + 1

    def check(self, source, own_model=False):
        """Refuse a source this scorer cannot score (e.g. a band count a model was not trained
        on). ``own_model``: the scorer's model was trained on this source's pixels (a quick
        model), so its values are in the model's units whatever a probe of them says."""

    def fit(self, source):
        return self

    def score_samples(self, X):
        """Scores for pixels X of shape (n, bands); a score that compares each pixel with its
        neighbours has none (``score_block`` scores it)."""
        raise HsanomalyError(f"score {self.name!r} compares pixels with their neighbours; use "
                             "score_block")

    def score_block(self, block, valid):
        """Score the inner pixels of a halo-padded block; see docs/architecture.md."""
        h = self.halo
        inner = block[:, h:block.shape[1] - h, h:block.shape[2] - h]
        ok = valid[h:valid.shape[0] - h, h:valid.shape[1] - h]
        score = np.full(ok.shape, np.nan, dtype=np.float32)
        if ok.any():
            score[ok] = self.score_samples(inner[:, ok].T)
        return {"score": score[None]}

    def params(self):
        """Plain-JSON description of the configuration: its ``settings`` and, for a score that
        reads a model, the model's digest; a resumed run must match it."""
        bundle = self.model_bundle
        return self.settings() if bundle is None else {**self.settings(), "model": bundle.digest()}

    def settings(self):
        """The configuration but the model, known before the model is read: what a resume
        compares before its quick model is trained."""
        return {"name": self.name}

    def unmeasured_outputs(self):
        """Extra outputs this configuration cannot measure (they would be all zeros)."""
        return ()

    def release(self):
        """Let go of what scoring one source kept (results its tiles shared): the engine
        calls it when the tiles are done."""

    def planned(self, outputs):
        """This scorer gathering just the extra outputs, of those its class offers, named in
        ``outputs`` (a run's plan): those not written are not computed into a tile's result
        nor kept in the strips its neighbours share. ``self`` where it gathers just those;
        otherwise a copy (fitted or not, as this one is), so the caller's scorer is left as
        it was."""
        wanted = tuple(name for name in type(self).extra_outputs if name in outputs)
        if wanted == tuple(self.extra_outputs):
            return self
        narrowed = copy.copy(self)
        narrowed.extra_outputs = wanted
        return narrowed


def moments(X):
    """Pixel count, mean and scatter (the sum of outer products about that mean) of pixels X
    (n, bands), in float64: one tile's share of a covariance. Centring on the tile's own
    mean keeps the precision a raster stored with a large offset would lose to a sum of
    squares. Tiles' moments are folded with ``merge_moments`` (``scene_moments``), never summed."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0) if len(X) else np.zeros(X.shape[1])
    centred = X - mean
    return np.array(len(X), dtype=np.float64), mean, centred.T @ centred


def merge_moments(a, b):
    """The ``moments`` of two tiles' pixels together (Chan, Golub and LeVeque's pairwise
    update), so a streaming or cluster fold stays as precise as one pass over all pixels."""
    (na, mean_a, scatter_a), (nb, mean_b, scatter_b) = a, b
    if na == 0 or nb == 0:
        return b if na == 0 else a
    n = na + nb
    delta = mean_b - mean_a
    return n, mean_a + delta * (nb / n), scatter_a + scatter_b + np.outer(delta, delta) * (na * nb / n)


SCENE_MOMENTS = (moments, merge_moments)      # the fold ``scene_moments`` asks a source for


def scene_moments(source, tile=TILE):
    """``moments`` of every valid pixel of a source, in one streaming pass over its tiles (or
    none: within ``source.folding(SCENE_MOMENTS)``, a sample folded them on its pass)."""
    return source.reduce(moments, tile=tile, combine=merge_moments)


def mean_cov(n, mean, scatter):
    """Mean and unbiased covariance from ``moments``."""
    return mean, scatter / max(n - 1, 1)


def check_pixels(source, n, needed, what, why, sample=None, enough=None):
    """Refuse a fit on fewer than ``needed`` valid pixels: a covariance from no more pixels
    than dimensions is singular, and the distances it gives, negative ones included, would be
    written as if they meant something. ``n`` pixels drawn by a ``sample`` from a raster of
    more (``sampled_from``) are the sample's fault: ``enough`` (default twice ``needed``) is
    the sample to ask for."""
    if n == 0:
        raise source.no_valid_pixels()
    if n < needed:
        valid = getattr(source, "sampled_from", None) if sample is not None else None
        held = (f"{spell('sample', sample)} drew {int(n)} of the raster's {valid}: pass at "
                f"least {enough or 2 * needed}" if valid is not None and valid >= needed
                else f"the raster has {int(n if valid is None else valid)}"
                f"{' outside its mask' if getattr(source, 'exclusion', None) is not None else ''}")
        raise HsanomalyError(f"{source.name}: {what} needs at least {needed} valid pixels "
                             f"({why}); {held}")


SINGULAR = 1e-12   # a correlation eigenvalue below this fraction of the largest: singular


def inverse(cov):
    """Inverse covariance; where it is singular (a band duplicated, a constant band) the
    pseudo-inverse, which leaves out the directions without spread instead of amplifying
    round-off along them into the scores. Judged on the correlation matrix, so that bands in
    very different units (a stack of products) are not taken for singular ones; hyperspectral
    scenes stay far above the threshold."""
    spread = np.sqrt(np.clip(np.diag(cov), 0, None))
    live = spread > 0
    if not live.any():
        return np.zeros_like(cov)                 # every band constant: no direction to weigh
    scale = np.outer(spread[live], spread[live])
    vals, vecs = np.linalg.eigh(cov[np.ix_(live, live)] / scale)
    if live.all() and vals[0] > SINGULAR * vals[-1]:
        return np.linalg.inv(cov)
    keep = vals > SINGULAR * vals[-1]
    result = np.zeros_like(cov)
    result[np.ix_(live, live)] = (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T / scale
    return result


TINY = 1e-12     # keeps log() finite for a zero distance


def log_distance(squared):
    """log of squared distances (negative round-off clipped to 0): how distances are fused, so
    a sum of logs is a product of distances."""
    return np.log(np.maximum(squared, 0) + TINY)


PIXEL_CHUNK = 8192      # pixels per part of a tile's float64 products (``in_chunks``)


def in_chunks(n):
    """Slices cutting n pixels into equal parts of at most PIXEL_CHUNK, so a tile's float64
    copies of every band exist a part at a time. Parts are equal, never a small remainder: a
    BLAS product may round a row differently in a small batch than in a large one."""
    bounds = np.linspace(0, n, max(1, -(-n // PIXEL_CHUNK)) + 1).astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def mahalanobis_sq(d, precision):
    """Squared Mahalanobis distances d_i' P d_i of the rows of ``d``, through one matrix product
    (BLAS) rather than an einsum over three operands, which numpy evaluates without BLAS."""
    return np.sum((d @ precision) * d, axis=1)
