"""Spectral preprocessing fitted on training pixels and stored as plain JSON.

Order of operations (each optional step is a parameter): drop constant/NaN bands ->
square-root noise transform (of the distance above the training's minimum, signed below it)
-> bin adjacent bands to ``n_bands`` -> whiten (the binned bands'
principal components, each divided by its standard deviation, so a Euclidean distance is a
Mahalanobis one) -> robust per-band scaling so the central ``1 - 2*quantile`` of each band
maps to [-1, 1]. Anomalies may land outside [-1, 1]; they are not clipped, because that is
where they stand out.
"""

import numpy as np

from .errors import HsanomalyError

BIN_ROWS = 8192     # pixels binned at once (bounds the float64 copy numpy makes of them)


class Preprocessor:
    """Fit on pixels ``X`` of shape (n_pixels, n_bands); transform pixels of that shape."""

    def __init__(self, n_bands=None, sqrt=False, scale=True, quantile=0.001, whiten=False):
        self.n_bands = n_bands
        self.sqrt = sqrt
        self.scale = scale
        self.quantile = quantile
        self.whiten = whiten

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 2:
            raise HsanomalyError("preprocessing needs at least two pixels of shape (n, bands)")
        self.n_features_in_ = X.shape[1]
        self.keep_ = self.usable(X).tolist()
        kept = int(sum(self.keep_))
        if kept == 0:
            raise HsanomalyError("every band is constant or NaN: nothing to learn from")
        X = X[:, np.asarray(self.keep_)]
        self.offset_ = X.min(axis=0).tolist()
        if self.sqrt:
            X = np.sqrt(X - np.asarray(self.offset_))
        n_out = kept if self.n_bands is None else int(self.n_bands)
        if not 1 <= n_out <= kept:
            raise HsanomalyError(f"cannot bin {kept} usable bands into {n_out} bands")
        self.bin_edges_ = [int(a[0]) for a in np.array_split(np.arange(kept), n_out)] + [kept]
        X = self._bin(X)
        if self.whiten:
            self.whiten_mean_ = X.mean(axis=0).tolist()
            lam, vec = np.linalg.eigh(np.cov(X, rowvar=False).reshape(n_out, n_out))
            lam = np.maximum(lam, lam.max() * 1e-9 + 1e-300)   # collinear bands stay finite
            self.whiten_matrix_ = (vec[:, ::-1] / np.sqrt(lam[::-1])).tolist()
            X = self._whiten(X)
        if self.scale:
            lo, hi = np.quantile(X, [self.quantile, 1 - self.quantile], axis=0)
            # a band nearly constant but for a few pixels (a zeroed absorption band's hot
            # pixels, a saturated one's dead pixels) spans its whole range instead: a width of
            # 1 was one count, or one reflectance, and those pixels thousands of ranges away
            # in counts only
            flat = hi <= lo
            lo, hi = np.where(flat, X.min(axis=0), lo), np.where(flat, X.max(axis=0), hi)
            hi = np.where(hi > lo, hi, lo + 1.0)
            self.center_ = ((hi + lo) / 2).tolist()
            self.half_range_ = ((hi - lo) / 2).tolist()
        self.n_features_out_ = n_out
        return self

    @staticmethod
    def usable(X):
        """Which bands of pixels ``X`` (n, bands) a fit keeps: finite and not constant."""
        X = np.asarray(X)
        finite = np.isfinite(X).all(axis=0)
        return finite & (np.where(finite, np.nanmax(X, axis=0) - np.nanmin(X, axis=0), 0.0) > 0)

    def _whiten(self, X):
        return (X - np.asarray(self.whiten_mean_)) @ np.asarray(self.whiten_matrix_)

    def _bin(self, X):
        """Adjacent bands averaged, in float64 whatever X's type, BIN_ROWS pixels at a time:
        numpy casts a whole input to float64 before summing it (a tile's pixels are a
        column-major view), and a chunk's copy is all that needs to exist at once."""
        edges = self.bin_edges_
        if len(edges) - 1 == X.shape[1]:
            return np.asarray(X, np.float64)
        out = np.empty((len(X), len(edges) - 1))
        for start in range(0, len(X), BIN_ROWS):
            np.add.reduceat(X[start:start + BIN_ROWS], edges[:-1], axis=1, dtype=np.float64,
                            out=out[start:start + BIN_ROWS])
        out /= np.diff(edges)
        return out

    def transform(self, X):
        """(n, bands_in) -> (n, bands_out) float32."""
        X = np.asarray(X)
        if X.dtype != np.float32:
            X = np.asarray(X, dtype=np.float64)
        if X.shape[-1] != self.n_features_in_:
            raise HsanomalyError(
                f"preprocessing was fitted on {self.n_features_in_} bands, got {X.shape[-1]}")
        if not all(self.keep_):
            X = X[:, np.asarray(self.keep_)]
        if self.sqrt:       # signed: a pixel darker than any the model saw stays apart
            X = np.asarray(X, np.float64) - np.asarray(self.offset_)
            X = np.copysign(np.sqrt(np.abs(X)), X)
        X = self._bin(X)
        if self.whiten:
            X = self._whiten(X)
        if self.scale:
            X = X - np.asarray(self.center_)        # a new array, divided in place
            X /= np.asarray(self.half_range_)
        return X.astype(np.float32)

    def fit_transform(self, X):
        return self.fit(X).transform(X)

    def levels(self, X=None):
        """Each binned band's level in the data's own units, before whitening and scaling
        (their mean where whitened, else the midpoint of their central range), of the pixels
        fitted or, given, of pixels ``X``; the fitted level of a band whose central range
        straddles zero is NaN; None where the bands are square-rooted or neither whitened nor
        scaled. A raster in other units has every band's level scaled alike
        (``model.compat``)."""
        if self.sqrt or not (self.whiten or self.scale):
            return None
        if X is None:
            fitted = np.asarray(self.whiten_mean_ if self.whiten else self.center_)
            return fitted if self.whiten else \
                np.where(fitted > np.asarray(self.half_range_), fitted, np.nan)
        X = self._bin(np.asarray(X, np.float64)[:, np.asarray(self.keep_, bool)])
        if self.whiten:
            return X.mean(axis=0)
        lo, hi = np.quantile(X, [self.quantile, 1 - self.quantile], axis=0)
        return (lo + hi) / 2

    def to_dict(self):
        params = {k: getattr(self, k) for k in ("n_bands", "sqrt", "scale", "quantile", "whiten")}
        state = {k: getattr(self, k) for k in vars(self) if k.endswith("_")}
        return {"params": params, "state": state}

    @classmethod
    def from_dict(cls, d):
        try:
            pre = cls(**d["params"])
            for k, v in d["state"].items():
                if not k.endswith("_"):
                    raise KeyError(k)
                setattr(pre, k, v)
            problem = pre._params_problem() or pre._state_problem()
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise HsanomalyError(f"preprocessing parameters are incomplete or invalid ({err})") from None
        if problem:
            raise HsanomalyError(f"preprocessing parameters are invalid: {problem}")
        return pre

    def _params_problem(self):
        """What makes stored parameters unusable (None if nothing): "no" for a flag would run
        the square root on a model trained without it."""
        for name in ("sqrt", "scale", "whiten"):
            if not isinstance(getattr(self, name), bool):
                return f"{name} is {getattr(self, name)!r}, not true or false"
        n, q = self.n_bands, self.quantile
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            return f"n_bands is {n!r}, not a positive whole number"
        if not isinstance(q, (int, float)) or isinstance(q, bool) or not 0 <= q < 0.5:
            return f"quantile is {q!r}, not a number from 0 to 0.5"
        return None

    def _state_problem(self):
        """What makes a stored state unusable (None if nothing): a state read from a file must
        fit together, or transform would fail with an IndexError or score every pixel NaN."""
        n_in = self.n_features_in_
        if not isinstance(n_in, int) or isinstance(n_in, bool) or n_in < 1:
            return f"n_features_in_ is {n_in!r}"
        if len(self.keep_) != n_in or not all(isinstance(k, bool) for k in self.keep_):
            return f"keep_ is not {n_in} true/false values"
        kept, edges = sum(self.keep_), self.bin_edges_
        if (len(edges) < 2 or not all(isinstance(e, int) and not isinstance(e, bool) for e in edges)
                or edges[0] != 0 or edges[-1] != kept or any(b <= a for a, b in zip(edges, edges[1:]))):
            return f"bin_edges_ do not split the {kept} kept bands"
        n_out = len(edges) - 1
        if self.n_features_out_ != n_out:
            return f"n_features_out_ is {self.n_features_out_!r}, the bins make {n_out}"
        shapes = {"offset_": (kept,)} if self.sqrt else {}
        if self.whiten:
            shapes.update(whiten_mean_=(n_out,), whiten_matrix_=(n_out, n_out))
        if self.scale:
            shapes.update(center_=(n_out,), half_range_=(n_out,))
        for name, shape in shapes.items():
            given = np.asarray(getattr(self, name))
            if given.dtype.kind not in "iuf":          # (text such as "1" would convert)
                return f"{name} is not {' x '.join(map(str, shape))} finite numbers"
            value = given.astype(np.float64)
            if value.shape != shape or not np.isfinite(value).all():
                return f"{name} is not {' x '.join(map(str, shape))} finite numbers"
        if self.scale and not (np.asarray(self.half_range_) > 0).all():
            return "half_range_ has a value that is not above 0"
        return None
