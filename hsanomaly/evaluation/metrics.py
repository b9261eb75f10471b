"""Detection metrics: ROC AUC, the thesis code's logAUC and lgFAR, and the detection rate at a
false-alarm rate an analyst would threshold at; overall and per target.

The ROC curve of a score map only changes slope where a target (positive) score lies, so
it is represented exactly by two points per distinct positive score: just before and just
after the threshold passes it. With the background scores sorted once, each point is two
``searchsorted`` lookups, so a target costs O(pixels * log(background)) rather than a pass
over the whole scene.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import defaults
from ..options import renamed_keywords
from ..rates import check_rate, rate_count
from ..regions import EIGHT_CONNECTED
from ..spelling import counted, spell

HALF_FALSE_POSITIVE = 0.5   # zero-FP thresholds count as half a false positive (thesis, 3.2)


@dataclass(frozen=True)
class RocCurve:
    """A piecewise-linear ROC curve in counts: ``fp[i]`` false and ``tp[i]`` true positives."""

    fp: np.ndarray
    tp: np.ndarray
    n_pos: int
    n_neg: int

    @property
    def fpr(self):
        return self.fp / self.n_neg

    @property
    def tpr(self):
        return self.tp / self.n_pos

    @property
    def log_fpr(self):
        """log10 FPR with zero false positives counted as half a false positive."""
        return np.log10(np.maximum(self.fp, HALF_FALSE_POSITIVE) / self.n_neg)

    @property
    def auc(self):
        """Area under the ROC curve (trapezoidal, so ties score one half, as in sklearn)."""
        return float(_trapezoid(self.tpr, self.fpr))

    @property
    def log_auc(self):
        """TPR integrated over log10 FPR from 0.5/N_neg to 1, divided by |log10(0.5/N_neg)|.

        Tied scores count as the expected curve of breaking the ties at random, as the AUC's
        trapezoids count them: between the k-th and (k+1)-th of D tied background pixels, TPR
        has risen by (k + 1) / (D + 1) of the tied targets. (A straight line in log FPR across
        a tie credited a map of tied scores with detections it never ranks: a constant map
        scored 0.5, above real detectors.) Without ties this is the trapezoid rule.
        """
        from scipy.special import gammaln

        f0, f1 = self.fp[:-1].astype(np.float64), self.fp[1:].astype(np.float64)
        t0, rise = self.tp[:-1].astype(np.float64), (self.tp[1:] - self.tp[:-1]).astype(np.float64)
        log = np.log(np.maximum(self.fp, HALF_FALSE_POSITIVE))
        steps = log[1:] - log[:-1]                  # sum of the log widths of the unit steps
        # sum over k = f0 .. f1 - 1 of k (log(k + 1) - log k); the k = 0 term is 0
        m, top = np.maximum(f0, 1.0), np.maximum(f1, 1.0)
        weighted = np.where(top > m, (top - 1) * np.log(top) - m * np.log(m)
                            - (gammaln(top) - gammaln(m + 1)), 0.0)
        share = rise / (f1 - f0 + 1)                # of the tied targets, per background pixel
        area = (t0 + share * (1 - f0)) * steps + share * weighted
        width = np.log(self.n_neg / HALF_FALSE_POSITIVE)
        return float(area.sum() / self.n_pos / width)

    def expected_log_curve(self, steps=64):
        """(FPR, TPR) of the curve ``log_auc`` integrates, for drawing on a log FPR axis: within
        a tie, the steps its docstring describes (at most ``steps`` of them drawn, spaced
        evenly in log FPR), not the straight line between its ends, which a log axis draws
        far above them."""
        fp, tp = [self.fp[:1]], [self.tp[:1]]
        for f0, f1, t0, t1 in zip(self.fp[:-1], self.fp[1:], self.tp[:-1], self.tp[1:]):
            tied = f1 - f0
            if tied > 1 and t1 > t0:
                k = np.unique(np.round(np.geomspace(1, tied, steps)).astype(np.int64)) - 1
                level = t0 + (t1 - t0) * (k + 1) / (tied + 1)
                fp.append(np.column_stack([f0 + k, f0 + k + 1]).ravel())
                tp.append(np.repeat(level, 2))
            fp.append([f1])
            tp.append([t1])
        fp = np.concatenate(fp).astype(np.float64)
        return (np.maximum(fp, HALF_FALSE_POSITIVE) / self.n_neg,
                np.concatenate(tp).astype(np.float64) / self.n_pos)

    @renamed_keywords(far="pd_far")
    def pd_at(self, pd_far=defaults.PD_FAR):
        """Pd: the share of target pixels found at the lowest threshold whose false-alarm rate
        is at most ``pd_far``; where an analyst works, which a whole-curve AUC near 1 hides."""
        return float(self.tp[self.fp <= rate_count(pd_far, self.n_neg)].max() / self.n_pos)

    @property
    def lg_far(self):
        """log10 FPR at the first detection, the threshold at the highest positive score."""
        return float(self.log_fpr[2])   # points: origin, just above, at the top positive score


def _trapezoid(y, x):
    return np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0)


def roc_curve(scores_pos, scores_neg, neg_sorted=False):
    """The exact ROC curve of positive vs negative scores (high score = positive).

    Pass ``neg_sorted=True`` when ``scores_neg`` is already ascending, to share one sort
    of the background across many targets.
    """
    pos = np.asarray(scores_pos).ravel()
    neg = np.asarray(scores_neg).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError("a ROC curve needs at least one positive and one negative score")
    if not neg_sorted:
        neg = np.sort(neg)
    values, counts = np.unique(pos, return_counts=True)
    values, counts = values[::-1], counts[::-1]
    fp_above = neg.size - np.searchsorted(neg, values, side="right")
    fp_at_or_above = neg.size - np.searchsorted(neg, values, side="left")
    tp_at_or_above = np.cumsum(counts)
    tp_above = tp_at_or_above - counts
    fp = np.concatenate([[0], np.column_stack([fp_above, fp_at_or_above]).ravel(), [neg.size]])
    tp = np.concatenate([[0], np.column_stack([tp_above, tp_at_or_above]).ravel(), [pos.size]])
    return RocCurve(fp, tp, int(pos.size), int(neg.size))


def label_targets(truth):
    """Targets as 8-connected components of ``truth``; returns (labels (rows, cols), n).

    scipy numbers components in row-major order of their first pixel, which makes T1..Tn
    stable and easy to find by eye (a test pins this down).
    """
    from scipy import ndimage

    return ndimage.label(np.asarray(truth) != 0, structure=EIGHT_CONNECTED)


@renamed_keywords(outer="outer_mask")
def class_masks(scores, truth, outer_mask=None, valid=None):
    """(target, background) pixel masks; pixels with a NaN score (the heatmap's nodata: the
    input had none there, or, as ``detect`` says when it happens, the score could not be
    computed), invalid pixels, and pixels in ``outer_mask`` but not in ``truth`` (ambiguous object
    edges, as in the thesis) are in neither. ``evaluate`` counts the target pixels left out."""
    scores = np.asarray(scores)
    truth = np.asarray(truth) != 0
    for name, mask in (("truth", truth), ("the outer mask", outer_mask), ("valid", valid)):
        if mask is not None and np.shape(mask) != scores.shape:
            raise ValueError(f"{name} is {np.shape(mask)}, the scores are {scores.shape}")
    scored = ~np.isnan(scores)
    if valid is not None:
        scored &= np.asarray(valid, bool)
    background = scored & ~truth
    if outer_mask is not None:
        background &= np.asarray(outer_mask) == 0
    return scored & truth, background


@dataclass(frozen=True)
class Target:
    """One connected truth component: its pixel coordinates, scored values and ROC curve."""

    id: str
    rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray          # scores of the target's scored pixels (NaN/invalid dropped)
    curve: Optional[RocCurve]   # None when no pixel of the target has a score


@renamed_keywords(outer="outer_mask")
def score_targets(scores, truth, outer_mask=None, valid=None):
    """The overall ROC curve and the per-target results, each target against all background.

    Raises ValueError when either class has no scored pixel.
    """
    scores = np.asarray(scores)
    target_mask, background_mask = class_masks(scores, truth, outer_mask, valid)
    if not target_mask.any():
        truth_known = np.asarray(truth) > 0
        if valid is not None:
            truth_known &= np.asarray(valid)
        raise ValueError("no target pixel has a score (the heatmap is NaN on every target pixel)"
                         if truth_known.any() else
                         "no target pixel has a score (the truth mask is empty or all NaN)")
    if not background_mask.any():
        raise ValueError("no background pixel has a score")
    background = np.sort(scores[background_mask])
    overall = roc_curve(scores[target_mask], background, neg_sorted=True)

    targets = []
    evaluated = None if valid is None else np.asarray(valid, bool)
    for k, (rows, cols) in enumerate(_target_pixels(*label_targets(truth)), start=1):
        if evaluated is not None and not evaluated[rows, cols].any():
            continue        # wholly unknown (an outer mask's nodata): neither found nor missed
        scored = target_mask[rows, cols]
        values = scores[rows[scored], cols[scored]]
        curve = roc_curve(values, background, neg_sorted=True) if values.size else None
        targets.append(Target(f"T{k}", rows, cols, values, curve))
    return overall, targets


def unscored_targets(scores, truth, valid=None):
    """{target id: its pixels that are evaluated (``valid``) but have no score (NaN)}, for the
    targets that have any: what the rates leave out."""
    scores = np.asarray(scores)
    missing = np.isnan(scores) if valid is None else np.isnan(scores) & np.asarray(valid, bool)
    return _counted_per_target(missing, truth)


def unevaluated_targets(truth, valid=None):
    """{target id: its pixels outside the evaluated ones (``valid``: an outer mask's nodata
    leaves them unknown)}, for the targets that have any: the rates leave them out too."""
    return {} if valid is None else _counted_per_target(~np.asarray(valid, bool), truth)


def _counted_per_target(where, truth):
    """{target id: how many of its pixels lie ``where``}, for the targets that have any."""
    found = {}
    for k, (rows, cols) in enumerate(_target_pixels(*label_targets(truth)), start=1):
        count = int(where[rows, cols].sum())
        if count:
            found[f"T{k}"] = count
    return found


def _target_pixels(labels, n_targets):
    """(rows, cols) of each target 1..n, from one pass over the labelled pixels."""
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols]
    order = np.argsort(ids, kind="stable")
    rows, cols, ids = rows[order], cols[order], ids[order]
    bounds = np.searchsorted(ids, np.arange(1, n_targets + 2))
    return [(rows[a:b], cols[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def check_pd_far(pd_far):
    """Refuse a false-alarm rate for Pd that is not a number in (0, 1)."""
    return check_rate(spell("pd_far"), pd_far)


def _regions_above(scores, valid, target, background, threshold):
    """The 8-connected regions of pixels above ``threshold`` (Pd's: ``pd_threshold``) that hold
    no ``target`` pixel, of the ``target`` and ``background`` masks: how many blobs an analyst
    would look at, where Pd counts pixels. A region of ambiguous pixels only (in neither
    mask: an outer mask's) is no false alarm."""
    from scipy import ndimage

    labels, n = ndimage.label(_scored(scores, valid) & (scores > threshold),
                              structure=EIGHT_CONNECTED)
    hits = np.bincount(labels[target], minlength=n + 1)
    false = np.bincount(labels[background], minlength=n + 1)
    return int(((hits == 0) & (false > 0))[1:].sum())


def pd_threshold(scores, background, pd_far):
    """The score a pixel must pass to be detected at false-alarm rate ``pd_far``: the
    (k+1)-th highest score of the ``background`` pixels, k the false alarms the rate allows."""
    values = scores[background]
    rank = values.size - 1 - rate_count(pd_far, values.size)
    return np.partition(values, rank)[rank]


def detect_far(scores, threshold):
    """The rate ``detect --far`` takes to draw the pixels above ``threshold``: a share of
    every pixel the heatmap scores (targets among them, and those an outer mask leaves out
    of the evaluation), the middle of the rates that do, so that it still does printed
    (``files.DETECT_FAR_DIGITS``)."""
    scored = ~np.isnan(scores)
    return (int((scored & (scores > threshold)).sum()) + 0.5) / int(scored.sum())


def _scored(scores, valid):
    return ~np.isnan(scores) if valid is None else ~np.isnan(scores) & np.asarray(valid, bool)


@renamed_keywords(outer="outer_mask")
def evaluate(scores, truth, outer_mask=None, valid=None, pd_far=defaults.PD_FAR,
             name="the heatmap", pixel_area=None):
    """A JSON-ready report of how well ``scores`` (rows, cols) find the ``truth`` targets:
    overall and per-target AUC, logAUC, lgFAR and Pd at ``pd_far`` (see ``score_targets``),
    and at that rate the targets found and the false-alarm regions (``_regions_above``),
    per km2 of background where ``pixel_area`` (square metres) is given.
    ``name``: how a warning names the scores."""
    pd_far = check_pd_far(pd_far)
    truth = np.asarray(truth)
    if truth.dtype.kind == "f" and np.isnan(truth).any():
        # NaN truth is unknown: in neither class, as the outer mask's ambiguous pixels are, so
        # that a false-alarm region crossing it stays one region
        unknown = np.isnan(truth)
        if outer_mask is None:
            outer_mask = unknown
        elif np.shape(outer_mask) == unknown.shape:   # another shape: class_masks refuses it
            outer_mask = (np.asarray(outer_mask) != 0) | unknown
        truth = np.where(unknown, 0, truth)
    overall, targets = score_targets(scores, truth, outer_mask, valid)
    unscored = unscored_targets(scores, truth, valid)
    unevaluated = unevaluated_targets(truth, valid)
    for left_out, why in ((unscored, "no score (NaN, the heatmap's nodata)"),
                          (unevaluated, "no known class (the outer mask's nodata)")):
        if left_out:
            from ..io.checks import warn

            count = sum(left_out.values())
            many = count > 1
            warn(f"{name}: {counted(count, 'target pixel')} {'have' if many else 'has'} {why} "
                 f"and {'are' if many else 'is'} left out of the rates and of the targets' "
                 "pixel counts, which measure the rest (their centroids place the whole "
                 "targets): " + ", ".join(f"{k} ({counted(n, 'pixel')})"
                                          for k, n in left_out.items()))
    if not rate_count(pd_far, overall.n_neg):
        from ..io.checks import warn

        warn(f"{name}: {counted(overall.n_neg, 'background pixel')} allow no false alarm at a "
             f"rate of {pd_far:g} (the finest they resolve is {1 / overall.n_neg:.2g}), so Pd "
             "and the targets found are those at no false alarm")
    scores = np.asarray(scores)
    target, background = class_masks(scores, truth, outer_mask, valid)
    threshold = pd_threshold(scores, background, pd_far)      # Pd's, and the regions' too
    regions = _regions_above(scores, valid, target, background, threshold)
    reports = [_target_report(t, pd_far) for t in targets]
    return {
        **_curve_metrics(overall, pd_far),
        "pd_far": pd_far,
        "pd_threshold": float(threshold),
        "pd_detect_far": detect_far(scores, threshold),
        "n_targets_found": sum(bool(t["pd"]) for t in reports),
        "n_false_alarm_regions": regions,
        "false_alarm_regions_per_km2": None if pixel_area is None else
        regions / (overall.n_neg * pixel_area / 1e6),
        "n_target_pixels": overall.n_pos,
        "n_unscored_target_pixels": sum(unscored.values()),
        "n_unevaluated_target_pixels": sum(unevaluated.values()),
        "n_background_pixels": overall.n_neg,
        "n_excluded_pixels": int(np.size(scores) - overall.n_pos - overall.n_neg),
        "n_targets": len(targets),
        "targets": reports,
    }


def _curve_metrics(curve, pd_far):
    if curve is None:
        return {"auc": None, "log_auc": None, "lg_far": None, "pd": None}
    return {"auc": curve.auc, "log_auc": curve.log_auc, "lg_far": curve.lg_far,
            "pd": curve.pd_at(pd_far)}


def _target_report(target, pd_far):
    return {"id": target.id, "pixels": int(target.scores.size),
            **_curve_metrics(target.curve, pd_far),
            "max_score": float(target.scores.max()) if target.scores.size else None,
            "centroid_row": float(target.rows.mean()), "centroid_col": float(target.cols.mean())}
