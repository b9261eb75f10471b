"""Scores built on a GAN model's reconstruction and the pixel's spatial context.

resrx    log squared Mahalanobis distance of the reconstruction residual x - G(z*) (in the model's
         preprocessed units) to the residuals' scene mean and covariance. The reconstruction
         cost weighs every band's error alike; the residual's own covariance tells which
         errors the generator makes everywhere (ordinary) and which it makes only at a few
         pixels (anomalous).
context  resrx plus log local RX (hsanomaly.scorers.rx.LocalRX against the ring between a
         guard and an outer window), i.e. the product of the two distances: a pixel must
         both be poorly explained by the generator and stand out from its neighbours.
mcontext resrx plus the multi-ring local RX of the pixels (hsanomaly.scorers.rings: the mean
         log local RX over several rings, small to large).
rescontext resrx plus the multi-ring local RX of the *residuals*: a pixel's residual against
         its neighbours' residuals, so the spatial term too sees only what the generator
         does not explain.
dualcontext ``weight`` x resrx plus the multi-ring local RX of both the pixels and the
         residuals.

``trim`` (all of them) refits the residual statistics without the most distant fraction of
the sample (a trimmed covariance, robust to the anomalies in the scene it is fitted on).
``purge`` (the scores with local rings; hsanomaly.scorers.purge) leaves the pixels that the
score's own first pass ranks highest out of every ring's statistics: a cluster of anomalous
pixels (a parked aircraft) then no longer makes up its own members' background. They are
still scored. ``neighbour_weight`` (all of them; the same module) adds to each pixel's score
that weight times the highest score in its 3x3 neighbourhood.

All of them are fitted on the scene they score (the residual statistics on a sample of its pixels,
local RX's projection in a streaming pass) and then score tiles independently. They need a
model trained on 1x1 windows.
"""

import copy
import threading

import numpy as np
from rasterio.windows import Window

from ..errors import HsanomalyError
from ..options import check_left_out, check_not_negative, check_whole
from .. import defaults
from .base import (SCENE_MOMENTS, Scorer, check_pixels, in_chunks, inverse, log_distance,
                   mahalanobis_sq, mean_cov, moments)
from .gan import GanScorer, ReconScorer
from .halo import HaloCache, Place
from .purge import Purged, fitted_whole
from .rings import MultiRingLRX
from .rx import LocalRX

_CACHE_LOCK = threading.Lock()


class ResidualScorer(Purged, Scorer):
    """The residual statistics on top of the bundle's recon score; subclasses add the context."""

    needs_model = True
    fits_on_scene = True
    options = ReconScorer.options + ("sample", "trim", "neighbour_weight")
    local = None              # spatial term on the pixels (LocalRX or MultiRingLRX)
    residual_local = None     # spatial term on the residuals (MultiRingLRX)
    model_training = {"whiten": False}   # measured on plain models (docs/ablations.md)
    weight = 1.0              # weight of the resrx term

    def __init__(self, model, sample=defaults.RESIDUAL_SAMPLE, seed=defaults.SEED, trim=defaults.RESIDUAL_TRIM,
                 purge=defaults.PURGE, neighbour_weight=defaults.NEIGHBOUR_WEIGHT, **gan_options):
        check_whole("sample", sample, 2)
        check_left_out("trim", trim)
        self.purge = check_left_out("purge", purge)
        self.neighbour_weight = check_not_negative("neighbour_weight", neighbour_weight)
        self.gan = ReconScorer(model, seed=seed, **gan_options)
        self.gan.model_training = self.model_training   # the model this score wants, not recon's
        self.gan.shown_as = self.name                   # and what its warnings call it
        self.sample, self.seed, self.trim = int(sample), int(seed), float(trim)

    extra_outputs = GanScorer.extra_outputs

    @property
    def model_bundle(self):
        return self.gan.bundle

    def moved_to(self, path):
        self.gan.moved_to(path)

    def runs_on(self, device, threads):
        moved = copy.copy(self)
        moved.gan = self.gan.runs_on(device, threads)
        return moved

    @property
    def extra_bands(self):
        return self.gan.extra_bands

    def planned(self, outputs):
        narrowed = super().planned(outputs)
        if narrowed is not self:        # a copy holds no halo cache (``__getstate__``)
            narrowed.gan = self.gan.planned(outputs)
            # the rings are fitted in place: the copy's own, so its fit leaves these as they are
            narrowed.local, narrowed.residual_local = copy.deepcopy(
                (self.local, self.residual_local))
        return narrowed

    def unmeasured_outputs(self):
        return self.gan.unmeasured_outputs()

    @property
    def ring_halo(self):
        rings = self.local if self.local is not None else self.residual_local
        return 0 if rings is None else rings.halo

    def extra_descriptions(self, input_bands):
        return self.gan.extra_descriptions(input_bands)

    def settings(self):
        params = {**self.gan.settings(), "name": self.name, "sample": self.sample,
                  "trim": self.trim, **self.purged_params()}
        if self.local is not None:
            params["local"] = self.local.params()
        if self.residual_local is not None:
            params["residual_local"] = self.residual_local.params()
        if "weight" in self.options:
            params["weight"] = self.weight
        return params

    def check(self, source, own_model=False):
        window = self.gan.bundle.window
        if window != 1:
            raise HsanomalyError(f"{self.gan.model}: score {self.name!r} needs a model trained on "
                                 f"1x1 windows, this one uses {window}x{window}")
        self.gan.check(source, own_model)
        if self.local is not None:
            self.local.check(source)
        if self.residual_local is not None:     # rings over the residuals: the model's bands
            for local in self.residual_local.locals:
                local.check_ring_size(self.gan.bundle.bands)

    def fit(self, source):
        self.release()         # what an earlier fit kept was fitted with other statistics
        try:
            return self._fit(source)
        finally:
            if not self.keep_fit:            # no scoring of this source follows
                self.release()

    def _fit(self, source):
        # the rings on the pixels fit on the scene's moments: folded on the sample's pass
        with source.folding(None if self.local is None else SCENE_MOMENTS):
            residual = self._sample_residual(source)
            bands = residual.shape[1]
            check_pixels(source, len(residual), bands + 1,
                         f"the {self.name} score's residual covariance on {bands} bands",
                         "one more than bands", self.sample)
            if self.local is not None:
                self.local.fit(source)
        self.mean_, cov = mean_cov(*moments(residual))
        self.precision_ = inverse(cov)
        if self.trim:
            distance = self._log_distance(residual)
            kept = residual[distance <= np.quantile(distance, 1 - self.trim)]
            self.mean_, cov = mean_cov(*moments(kept))
            self.precision_ = inverse(cov)
        if self.residual_local is not None:
            self.residual_local.fit_pixels(residual)
        self.fit_purge(source)
        return self

    def _sample_residual(self, source):
        """The residuals of the fit's sample of ``source``. A sample of every valid pixel of a
        scene fitted whole (``purge.fitted_whole``) is that block's valid pixels in the same
        (raster) order, so they are solved as the block, which is kept for the purge's first
        pass and the tile (``_block_residual``; the same bits: the search is pixelwise)."""
        pixels = source.sample(self.sample, self.seed)
        if not (self.shares_halo and len(pixels) == source.sampled_from
                and fitted_whole(source.height, source.width)
                and len(source.windows()) == 1):      # drawn from one tile: in raster order
            return self._residual(pixels)[0]
        window = Window(0, 0, source.width, source.height)
        block, valid = source.read(window, self.halo)
        return self._block_residual(block, valid, Place.of(source, window, self.halo), True)[0]

    def _residual(self, pixels, mask=None):
        """(x - G(z*), the GAN outputs) for pixels (n, bands_in), or a block's (bands_in, rows,
        cols) pixels where ``mask``, in preprocessed units. A block is preprocessed a part at
        a time (``in_chunks``): a copy of its every band never exists whole."""
        transform = self.gan.bundle.preprocessor.transform
        if mask is None:
            pre = transform(np.asarray(pixels))
        else:
            at = np.nonzero(mask)
            pre = np.empty((len(at[0]), self.gan.bundle.bands), np.float32)
            for part in in_chunks(len(at[0])):
                pre[part] = transform(pixels[:, at[0][part], at[1][part]].T)
        outputs = self.gan.score_windows(pre[:, :, None, None])
        return pre - outputs["recon"], outputs

    @property
    def solves_halo(self):
        """Whether the halo's residuals are solved: the rings, the purge's first pass or the
        neighbours' lift reach them."""
        return self.residual_local is not None or bool(self.purge or self.neighbour_weight)

    @property
    def shares_halo(self):
        """Whether neighbouring blocks share the halo's residuals: they are solved, and pixel
        by pixel whatever the batch, so a shared one is the one a block would solve (the fast
        solver without refinement, on a model without whitening, whose matrix product may
        round a row differently with the batch it is in)."""
        return (self.solves_halo and getattr(self.gan.solver, "pixelwise", False)
                and not self.gan.bundle.preprocessor.whiten)

    def _block_residual(self, block, valid, place, whole=False):
        """(residuals (n, bands), {extra output: (n, channels)}) of the block's n valid
        pixels in order. With ``place``, pixels a neighbouring block solved are taken from
        the halo cache (``scorers.halo``: the latent search treats pixels independently, so
        they are the values solved here) and this block keeps its strips for its neighbours
        (``whole``: all of it, a fit's block for the tiles)."""
        if place is None:
            residual, outputs = self._residual(block, valid)
            return residual, {name: np.asarray(outputs[name]).reshape(len(residual), -1)
                              for name in self.extra_bands}
        sizes = {"residual": self.gan.bundle.bands, **self.extra_bands}
        values = np.empty((sum(sizes.values()),) + valid.shape, np.float32)
        known = np.zeros(valid.shape, bool)
        cache = self._halo_cache()
        cache.fill(place, values, known)
        need = valid & ~known
        bounds = dict(zip(sizes, np.cumsum([0, *sizes.values()])))
        if need.any():
            residual, outputs = self._residual(block, need)
            for name, part in (("residual", residual), *((n, outputs[n]) for n in self.extra_bands)):
                start = bounds[name]
                values[start:start + sizes[name], need] = \
                    np.asarray(part).reshape(len(residual), -1).T
        cache.keep(place, values, known | need, whole)
        split = {name: values[start:start + sizes[name], valid].T
                 for name, start in bounds.items()}
        return split.pop("residual"), split

    def _halo_cache(self):
        with _CACHE_LOCK:
            if getattr(self, "_cache", None) is None:
                self._cache = HaloCache(self.halo)
            return self._cache

    def release(self):
        self._cache = None

    def __getstate__(self):
        return {k: v for k, v in vars(self).items() if k != "_cache"}

    def _log_distance(self, residual):
        """log of the residuals' squared Mahalanobis distance (the resrx score)."""
        d = np.asarray(residual, np.float64) - self.mean_
        return log_distance(mahalanobis_sq(d, self.precision_))

    def score_samples(self, X):
        if self.local is not None or self.residual_local is not None or self.neighbour_weight:
            return super().score_samples(X)         # refused: it has no per-pixel score
        return self._log_distance(self._residual(X)[0]).astype(np.float32)

    def score_block(self, block, valid, place=None):
        h = self.halo
        rows, cols = block.shape[1] - 2 * h, block.shape[2] - 2 * h
        inner = valid[h:h + rows, h:h + cols]
        result = {name: np.full((count, rows, cols), np.nan, np.float32)
                  for name, count in {"score": 1, **self.extra_bands}.items()}
        if not inner.any():
            return result
        fused, outputs = self._fusion(block, valid, place)
        result["score"][0, inner] = self.purged(fused, valid, place)[inner]
        for name in self.extra_bands:
            values = np.asarray(outputs[name], np.float32).reshape(inner.sum(), -1)
            result[name][:, inner] = values.T
        return result

    def fusion(self, block, valid, place=None):
        """The purge fit's (``Purged``): a block at ``place`` is kept whole for the tiles."""
        return self._fusion(block, valid, place, whole=True)[0]

    def _fusion(self, block, valid, place=None, whole=False):
        """(fused(exclude, crop), the GAN outputs of the inner pixels): the weighted sum of
        ``terms``."""
        terms, outputs = self.terms(block, valid, place, whole)

        def fused(exclude, crop):
            parts = terms(exclude, crop)
            score = self.weight * parts["resrx"]
            for name in ("residual rings", "pixel rings"):
                if name in parts:
                    score = score + parts[name]
            return score
        return fused, outputs

    def terms(self, block, valid, place=None, whole=False):
        """(terms(exclude, crop), the GAN outputs of the inner pixels): the score's log terms
        by name ("resrx", and "residual rings" and "pixel rings" where the score has them),
        each cropped by ``crop`` pixels with the ``exclude`` pixels left out of the rings.
        The residuals are solved once per block, for the halo too when the rings need them
        there (taken from the neighbouring blocks' where ``place`` says where the block
        lies, and kept for them: ``_block_residual``); what each term adds is there to see
        (docs/ablations.md weighs them)."""
        h = self.halo
        rows, cols = valid.shape[0] - 2 * h, valid.shape[1] - 2 * h
        inner = valid[h:h + rows, h:h + cols]
        if self.solves_halo:
            # the halo's residuals too: the rings, the first pass or the lift reach them
            residual, outputs = self._block_residual(block, valid,
                                                     place if self.shares_halo else None, whole)
            at_inner = inner_of(valid, h)
            outputs = {name: values[at_inner] for name, values in outputs.items()}
            distance = np.full(valid.shape, np.nan)
            distance[valid] = self._log_distance(residual)
        else:
            residual, outputs = self._residual(block[:, h:h + rows, h:h + cols], inner)
            distance = np.full(valid.shape, np.nan)
            distance[h:h + rows, h:h + cols][inner] = self._log_distance(residual)
        cube = None
        if self.residual_local is not None:
            cube = np.full((residual.shape[1],) + valid.shape, np.nan, np.float32)
            cube[:, valid] = residual.T

        def terms(exclude, crop):
            parts = {"resrx": distance[crop:valid.shape[0] - crop, crop:valid.shape[1] - crop]}
            if cube is not None:
                parts["residual rings"] = self.residual_local.log_score(cube, valid, exclude,
                                                                        crop)
            if self.local is not None:
                parts["pixel rings"] = self.local.log_score(block, valid, exclude, crop)
            return parts
        return terms, outputs


def inner_of(valid, halo):
    """For the valid pixels of a padded block (in row-major order), which lie in its inner part."""
    rows, cols = np.nonzero(valid)
    return ((rows >= halo) & (rows < valid.shape[0] - halo)
            & (cols >= halo) & (cols < valid.shape[1] - halo))


def _each_once(*groups):
    """The options of a score's parts, each named once, in order."""
    return tuple(dict.fromkeys(option for group in groups for option in group))


class ResidualRXScorer(ResidualScorer):
    name = "resrx"
    meaning = "GAN residual: log Mahalanobis distance"


class ContextScorer(ResidualScorer):
    name = "context"
    meaning = "GAN residual x local RX (log)"
    options = _each_once(ResidualScorer.options, LocalRX.options, ("purge",))
    renamed_options = LocalRX.renamed_options
    unscored_cause = LocalRX.unscored_cause

    def __init__(self, model, outer=defaults.CONTEXT_OUTER, guard=defaults.CONTEXT_GUARD,
                 pca=defaults.LRX_PCA, **options):
        super().__init__(model, **options)
        self.local = LocalRX(outer, guard, pca)


class RingContextScorer(ResidualScorer):
    """resrx plus the multi-ring local RX of the pixels, of the residuals, or of both
    (``rings_on``), each with the same rings."""

    options = _each_once(ResidualScorer.options, MultiRingLRX.options)
    renamed_options = MultiRingLRX.renamed_options
    unscored_cause = MultiRingLRX.unscored_cause
    rings_on: tuple[str, ...] = ()

    def __init__(self, model, rings=defaults.RINGS, pca=defaults.LRX_PCA,
                 top_rings=defaults.TOP_RINGS, **options):
        super().__init__(model, **options)
        if "pixels" in self.rings_on:
            self.local = MultiRingLRX(rings, pca, top_rings)
        if "residuals" in self.rings_on:
            self.residual_local = MultiRingLRX(rings, pca, top_rings)


class MultiContextScorer(RingContextScorer):
    name = "mcontext"
    meaning = "GAN residual x multi-ring local RX (log)"
    rings_on = ("pixels",)


class ResidualContextScorer(RingContextScorer):
    name = "rescontext"
    meaning = "GAN residual x multi-ring local RX of the residuals (log)"
    rings_on = ("residuals",)


class DualContextScorer(RingContextScorer):
    name = "dualcontext"
    meaning = "GAN residual x multi-ring local RX of the pixels and the residuals (log)"
    options = _each_once(RingContextScorer.options, ("weight",))
    rings_on = ("pixels", "residuals")

    def __init__(self, model, top_rings=defaults.DUAL_TOP_RINGS, weight=defaults.DUAL_WEIGHT,
                 purge=defaults.DUAL_PURGE, neighbour_weight=defaults.DUAL_NEIGHBOUR_WEIGHT,
                 **options):
        weight = check_not_negative("weight", weight)
        super().__init__(model, top_rings=top_rings, purge=purge,
                         neighbour_weight=neighbour_weight, **options)
        self.weight = weight
