"""PNG plots of an evaluation: ROC, semi-log ROC, score histograms, heatmap with target outlines.

Figures are drawn on matplotlib's Agg canvas directly (never through pyplot), so plotting
works headless and leaves the caller's matplotlib backend alone; matplotlib is imported only
when a plot is made. Every file is written atomically.
"""

import functools
import threading
from pathlib import Path

import numpy as np

from ..errors import HsanomalyError, describe
from ..io.atomic import staged_into
from ..quicklook import (COLORMAP, MAX_SIZE, STRETCH_PERCENTILES, block_maxima, png_check,
                         stretch_limits)
from .metrics import HALF_FALSE_POSITIVE, class_masks, label_targets, score_targets

# nodata: a pale blue that no colour of the ramp comes near, with normal colour vision or
# with any of the three colour blindnesses (a grey read as a mid score to a deuteranope)
NODATA_COLOUR = (0.62, 0.79, 0.88, 1.0)
LEGEND_TARGETS = 24     # targets named in a ROC plot's legend; beyond, drawn unnamed
TITLE_NAME = 40         # characters of the heatmap's name a plot's title keeps


_STYLE = threading.RLock()       # a drawing may call another


def own_style(draw):
    """``draw`` (which makes and saves a figure) in matplotlib's default style, whatever the
    caller's rcParams say (a notebook's dark style, ``text.usetex`` without LaTeX, which
    failed the plots after the evaluation): the pictures look alike everywhere. One thread at
    a time: rcParams are the process's, and two drawings restoring them in turn would leave
    the defaults for good."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        import matplotlib.style

        with _STYLE, matplotlib.style.context("default"):
            return draw(*args, **kwargs)
    return drawn


def new_figure(size=(6, 5)):
    """A matplotlib figure on its own Agg canvas (no pyplot: no global backend, safe in QGIS)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="tight")   # "constrained" leaks per figure before 3.7.2
    FigureCanvasAgg(fig)
    return fig


def _written(path, stage, write):
    """``write(tmp)`` into a temporary file for ``path``: replaced with ``stage``'s other
    outputs when one is given, else on its own once checked."""
    with staged_into(stage) as into:
        write(into.path(path, check=png_check))


def save_png(fig, path, stage=None, dpi=120):
    """``fig`` as a PNG marked as hsanomaly's, written atomically (with ``stage``'s outputs when
    one is given) and decoded whole before it replaces ``path``."""
    from ..io.ownership import SOFTWARE

    _written(path, stage, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi,
                                                  metadata={"Software": SOFTWARE}))


TARGET_LINES = ("solid", "dashed", "dotted", "dashdot")


def _cycle_colours():
    """The default style's colour cycle (tab10)."""
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def _draw_curves(ax, overall, targets, log_x, name="all"):
    """Overall curve thick (``name`` in the legend), per-target curves thin (or other methods'
    beside it); the legend gives each one's AUC or logAUC, the area of the curve drawn, and
    goes where it covers the fewest curves."""
    def points(curve):
        return curve.expected_log_curve() if log_x else (curve.fpr, curve.tpr)

    def value(curve):
        return curve.log_auc if log_x else curve.auc

    targets = targets or {}
    named = len(targets) <= LEGEND_TARGETS      # more would cover the curves
    colours = _cycle_colours()
    for i, (target, curve) in enumerate(targets.items()):
        # line styles beside the colours: colours alone part few curves for a colour-blind
        # reader, and T1 and T11 were one blue (ten colours, four styles: twenty pairs)
        ax.plot(*points(curve), lw=0.8, alpha=0.7, color=colours[i % len(colours)],
                linestyle=TARGET_LINES[i % len(TARGET_LINES)],
                label=f"{target} {value(curve):.3f}" if named else None)
    ax.plot(*points(overall), lw=2.2, color="black",
            label=f"{name} {'logAUC' if log_x else 'AUC'} {value(overall):.3f}"
            + ("" if named else f" (thin: {len(targets)} targets)"))
    ax.set_ylabel("true positive rate")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=1 + len(targets) // 12 if named else 1, loc="best")


@own_style
def plot_roc(overall, path, title="", targets=None, stage=None, name="all"):
    """Linear ROC curve of ``overall`` (a RocCurve, called ``name``), plus optional {name:
    RocCurve} ``targets`` (or other methods)."""
    fig = new_figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="red", lw=0.8)
    _draw_curves(ax, overall, targets, log_x=False, name=name)
    ax.set_xlabel("false positive rate")
    ax.set_xlim(0, 1)
    ax.set_title(title or "ROC")
    save_png(fig, path, stage)


@own_style
def plot_log_roc(overall, path, title="", targets=None, stage=None, name="all"):
    """ROC on a log10 FPR axis from 0.5/N_background, the range logAUC integrates over."""
    fig = new_figure()
    ax = fig.subplots()
    floor = HALF_FALSE_POSITIVE / overall.n_neg
    guess = np.logspace(np.log10(floor), 0, 200)
    ax.plot(guess, guess, ls="--", color="red", lw=0.8)
    _draw_curves(ax, overall, targets, log_x=True, name=name)
    ax.set_xscale("log")
    ax.set_xlim(floor, 1)
    ax.set_xlabel("false positive rate (zero counted as half a false positive)")
    ax.set_title(title or "semi-log ROC")
    save_png(fig, path, stage)


@own_style
def plot_histograms(background, targets, path, title="", bins=100, stage=None):
    """Score histograms of background vs target pixels on shared bins, log counts; the
    legend counts the pixels whose score is infinite or missing, which no bin holds."""
    background = np.asarray(background, dtype=np.float64).ravel()
    targets = np.asarray(targets, dtype=np.float64).ravel()
    finite = [values[np.isfinite(values)] for values in (background, targets)]
    edges = np.histogram_bin_edges(np.concatenate(finite), bins=bins)
    fig = new_figure()
    ax = fig.subplots()
    for values, shown, label in zip((background, targets), finite, ("background", "targets")):
        left_out = values.size - shown.size
        ax.hist(shown, bins=edges, density=bool(shown.size), alpha=0.6,
                label=f"{label} ({values.size}" + (f", {left_out} not finite, not shown)"
                                                    if left_out else ")"))
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.legend(fontsize="small")
    ax.set_title(title or "score histograms")
    save_png(fig, path, stage)


@own_style
def plot_heatmap(scores, truth, path, title="", stage=None):
    """The score map (percentile-stretched, nodata pale blue) with truth outlines labelled
    T1..Tn, in the raster's rows and columns."""
    scores = np.asarray(scores)
    rows, cols = scores.shape
    scale = 9.0 / max(rows, cols)
    fig = new_figure(size=(max(cols * scale, 3) + 1.2, max(rows * scale, 3) + 0.6))
    ax = fig.subplots()
    import matplotlib

    cmap = matplotlib.colormaps[COLORMAP].with_extremes(bad=NODATA_COLOUR)
    shown = block_maxima(scores, MAX_SIZE)   # every pixel: matplotlib held copies of a large map
    low, high = stretch_limits(shown)       # of the picture: block maxima run hotter than pixels
    # clipped first: an infinite score is the top colour, not the nodata grey of NaN
    image = ax.imshow(np.ma.masked_invalid(np.clip(shown, low, high)), cmap=cmap, vmin=low,
                      vmax=high, extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
    # the arrows: scores beyond the stretch are drawn in its end colours
    fig.colorbar(image, ax=ax, shrink=0.8, extend="both", label="score ({}th to {}th "
                 "percentile)".format(*STRETCH_PERCENTILES))
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    labels, n_targets = label_targets(truth)
    if n_targets:
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(_pixel_outline(labels > 0), colors="cyan",
                                         linewidths=0.8))
        from scipy import ndimage

        for k, (row_slice, col_slice) in enumerate(ndimage.find_objects(labels), start=1):
            ax.annotate(f"T{k}", (col_slice.stop, row_slice.start), color="cyan",
                        fontsize="x-small")
    ax.set_title(title or "heatmap")
    save_png(fig, path, stage)


def _pixel_outline(mask):
    """Line segments (x, y) along the pixel edges between ``mask`` and its complement, so
    outlines follow pixel boundaries instead of cutting through edge pixels as contours do."""
    padded = np.pad(mask, 1)
    rows, cols = np.nonzero(padded[1:, 1:-1] != padded[:-1, 1:-1])   # edge above (rows - 0.5)
    horizontal = np.stack([np.column_stack([cols - 0.5, rows - 0.5]),
                           np.column_stack([cols + 0.5, rows - 0.5])], axis=1)
    rows, cols = np.nonzero(padded[1:-1, 1:] != padded[1:-1, :-1])   # edge left of (cols - 0.5)
    vertical = np.stack([np.column_stack([cols - 0.5, rows - 0.5]),
                         np.column_stack([cols - 0.5, rows + 0.5])], axis=1)
    return np.concatenate([horizontal, vertical])


PLOT_FILES = {"roc": "roc.png", "log_roc": "log_roc.png",
              "histograms": "histograms.png", "heatmap": "heatmap.png"}


def write_plots(report, scores, truth, outdir, title="", outer_mask=None, valid=None,
                stage=None):
    """Write the four plots of an evaluation into ``outdir`` (created if needed); returns
    {plot name: path}. ``outer_mask`` and ``valid`` must be those ``report`` was computed with.
    The files are replaced together (with ``stage``'s other outputs when one is given) once
    all are written and checked; a directory that did not exist appears whole."""
    from ..io.atomic import staged

    if stage is None:          # the figures and the folder they make: replaced all together
        with staged() as own:
            return write_plots(report, scores, truth, outdir, title, outer_mask, valid, own)
    outdir = Path(outdir)
    paths = {name: outdir / filename for name, filename in PLOT_FILES.items()}
    if not outdir.exists():
        try:
            outdir.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise HsanomalyError(f"{outdir}: cannot create the plots directory "
                                 f"({describe(err)})") from None
        stage = _InDirectory(stage.directory(
            outdir, check=lambda folder: [png_check(p) for p in sorted(folder.iterdir())]))
    _draw_plots(report, scores, truth, outer_mask, valid, paths, title, stage)
    return paths


class _InDirectory:
    """Writes into a staged directory, which appears whole with its stage's commit."""

    def __init__(self, folder):
        self.folder = folder

    def path(self, path, check=None):
        return self.folder / Path(path).name


def shortened(name, most=TITLE_NAME):
    """``name`` cut in its middle to ``most`` characters, so that a plot's title keeps the
    figures after it in the figure."""
    return name if len(name) <= most else name[:most // 2 - 1] + "…" + name[-(most // 2):]


def _draw_plots(report, scores, truth, outer_mask, valid, paths, title, stage):
    overall, targets = score_targets(scores, truth, outer_mask, valid)
    curves = {t.id: t.curve for t in targets if t.curve is not None}
    prefix = f"{shortened(title)}: " if title else ""
    headline = f"AUC {report['auc']:.4f}, logAUC {report['log_auc']:.4f}"
    plot_roc(overall, paths["roc"], f"{prefix}ROC ({headline})", curves, stage)
    plot_log_roc(overall, paths["log_roc"], f"{prefix}semi-log ROC ({headline})", curves, stage)
    target_scores = np.concatenate([t.scores for t in targets])
    background = np.asarray(scores)[class_masks(scores, truth, outer_mask, valid)[1]]
    plot_histograms(background, target_scores, paths["histograms"], f"{prefix}score histograms",
                    stage=stage)
    plot_heatmap(scores, truth, paths["heatmap"], f"{prefix}heatmap ({headline})", stage)
