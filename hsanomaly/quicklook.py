"""A quick-look PNG of a heatmap GeoTIFF: the scores in colour above a colour bar with its
limits, plus a world file (``.pgw``) and GDAL's ``.png.aux.xml`` with the CRS, so a GIS puts
the picture on the map. The picture's top rows are the raster; the bar lies below its edge."""

from pathlib import Path

import numpy as np

from .io.heatmap import SCORE_TAG
from .io.ownership import TAG_PREFIX

MAX_SIZE = 2048   # pixels on the longer side; larger heatmaps show their blocks' maxima
BAR_HEIGHT = 28   # pixels of the colour-bar strip appended below the scores
COLORMAP = "inferno"            # every picture of scores: the quick look and the report's
STRETCH_PERCENTILES = (1, 99)   # their colour range: robust to a few extreme scores
STRIP_PIXELS = 1 << 22          # heatmap pixels read at a time for the quick look


def stretch_limits(scores, valid=None):
    """Colour limits from percentiles of the finite (and valid) scores."""
    finite = np.isfinite(scores)
    if valid is not None:
        finite &= np.asarray(valid, bool)
    if not finite.any():
        return 0.0, 1.0
    low, high = np.percentile(scores[finite], STRETCH_PERCENTILES)
    return float(low), float(max(high, low + np.finfo(np.float32).eps))


def block_maxima(scores, most=MAX_SIZE, *, step=None):
    """``scores`` at most ``most`` pixels a side (or in blocks of ``step`` pixels a side), each
    pixel the largest score of its block (NaN where the block has none): the largest, not an
    average or a sample, so that a one-pixel target stays in the picture."""
    step = -(-max(scores.shape) // most) if step is None else step
    if step == 1:
        return scores
    rows, cols = scores.shape
    kind = np.result_type(scores.dtype, np.float32)          # float64 scores stay float64
    shown = np.empty((-(-rows // step), -(-cols // step)), kind)
    for i, row in enumerate(range(0, rows, step)):
        band = scores[row:row + step].astype(kind)
        band = np.pad(band, ((0, 0), (0, shown.shape[1] * step - cols)), constant_values=np.nan)
        shown[i] = np.fmax.reduce(band.reshape(len(band), shown.shape[1], step), axis=(0, 2))
    return shown


def _read_block_maxima(ds, step):
    """Band 1 of ``ds`` as ``block_maxima`` in blocks of ``step`` pixels, read a strip of
    blocks at a time, so that the whole heatmap is never in memory. (GDAL's reduced read
    would take the heatmap's overviews, averages in which small targets fade out.)"""
    from rasterio.windows import Window

    from .io.gdal import read_scaled

    rows = step * max(1, STRIP_PIXELS // (ds.width * step))
    strips = []
    for top in range(0, ds.height, rows):
        strip = read_scaled(ds, 1, window=Window(0, top, ds.width, min(rows, ds.height - top)))
        strip = strip.astype(np.result_type(ds.dtypes[0], np.float32)).filled(np.nan)
        strips.append(block_maxima(strip, step=step))
    return np.concatenate(strips)


def png_check(path):
    """Re-open a written PNG and decode it whole (a truncated file fails here)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()


STRETCH_TEXT = TAG_PREFIX + "STRETCH"  # the scores the colour bar's ends stand for, in the PNG
SIDECAR_KINDS = ("world file", "CRS file")     # what each of ``sidecars`` is, for messages


def sidecars(png):
    """The files written beside ``png`` for a georeferenced heatmap: world file, CRS."""
    png = Path(png)
    return [png.with_suffix(".pgw"), Path(str(png) + ".aux.xml")]


def write_png(heatmap, png, max_size=MAX_SIZE, stage=None, name=None):
    """Write ``png`` (band 1 of ``heatmap``, at most ``max_size`` pixels a side: ``block_maxima``)
    and, when the heatmap is georeferenced, its ``sidecars`` (an unplaced one shrunk: a world
    file of its pixel grid); all through the one write path
    (replaced with ``stage``'s other outputs when one is given). The picture records its
    heatmap (``drawing_record``; ``name``: the output a staged temporary becomes) and stretch."""
    from affine import Affine
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from .io.atomic import staged_into
    from .io.ownership import SOFTWARE, drawing_record
    from .io.gdal import open_raster, placed_without_transform

    with open_raster(heatmap) as ds:
        step = -(-max(ds.height, ds.width) // max_size)
        scores = _read_block_maxima(ds, step)
        score = ds.tags().get(SCORE_TAG, "score")
        scale = (step, step)         # heatmap pixels per picture pixel, across and down
        transform = ds.transform @ ds.transform.scale(*scale)
        crs = ds.crs
        georeferenced = not ds.transform.is_identity   # (a decimated identity is not one)
        gcps, gcp_crs = ds.gcps
        placed_by = placed_without_transform(ds)
        if not georeferenced and placed_by and not gcps:     # GCPs: the .aux.xml below
            from .io.checks import warn

            warn(f"{png}: the heatmap is placed on the map by {placed_by}, which a PNG cannot "
                 "carry; the quick look is not georeferenced")
    scores = np.asarray(scores, dtype=np.float64)
    if georeferenced:
        scores, transform = north_up(scores, transform)
    low, high = stretch_limits(scores)      # of the picture: maxima run hotter
    image = render(scores, low, high, score)
    info = PngInfo()
    info.add_text("Software", SOFTWARE)          # what marks the file as ours
    for key, value in {**drawing_record(heatmap, name),
                       STRETCH_TEXT: f"{float(low)!r} {float(high)!r}"}.items():
        info.add_text(key, value)
    files = {Path(png): lambda tmp: Image.fromarray(image, "RGBA").save(tmp, format="PNG",
                                                                        pnginfo=info)}
    if georeferenced:                    # a world file needs no CRS; the .aux.xml holds it, or
        world, aux = sidecars(png)       # none: an earlier run's must not place this picture
        files[world] = _text(world_file_text(transform))
        files[aux] = _text(_aux_xml(crs))
    elif gcps:                           # ground control points, at the picture's pixels
        files[sidecars(png)[1]] = _text(_gcp_aux_xml(gcps, gcp_crs, scale))
    elif step > 1 and not placed_by:     # unplaced and shrunk: on the heatmap's pixel grid, as
        pixels = Affine(step, 0, 0, 0, -step, 0)     # a GIS shows it (x column, y -row)
        files[sidecars(png)[0]] = _text(world_file_text(pixels))
    with staged_into(stage) as into:
        for path, write in files.items():
            is_png = path.suffix == ".png"
            stale = [p for p in sidecars(png) if p not in files] if is_png else ()  # earlier
            write(into.path(path, check=png_check if is_png else None, stale=stale))


def _text(text):
    """A writer of side file ``text`` to a temporary path, in UTF-8 (a CRS's name may not be
    ASCII, and the locale's encoding is no file format)."""
    return lambda tmp: Path(tmp).write_text(text, encoding="utf-8")


def render(scores, low, high, name):
    """RGBA uint8 picture: the scores (NaN transparent) over a colour bar labelled with the
    stretch's limits and the score's name (those the width holds whole)."""
    import matplotlib
    from PIL import Image, ImageDraw


    cmap = matplotlib.colormaps[COLORMAP]
    rgba = cmap(np.clip((scores - low) / (high - low if high > low else 1.0), 0, 1))
    rgba[np.isnan(scores)] = 0.0         # nodata; an infinite score is the top colour
    rows, cols = scores.shape
    bar = np.ones((BAR_HEIGHT, cols, 4))
    bar[3:12] = cmap(np.linspace(0, 1, cols))[None]
    picture = Image.fromarray((np.concatenate([rgba, bar]) * 255).round().astype(np.uint8), "RGBA")
    draw = ImageDraw.Draw(picture)
    labels, y = [f"{low:.4g}", name, f"{high:.4g}"], rows + 14
    widths = [draw.textlength(text) for text in labels]
    black = (0, 0, 0, 255)
    if widths[0] + 2 < cols:      # a label cut short would read as another number
        draw.text((1, y), labels[0], fill=black)
    if widths[0] + widths[2] + 6 < cols:
        draw.text((cols - widths[2] - 1, y), labels[2], fill=black)
    if sum(widths) + 12 < cols:
        draw.text(((cols - widths[1]) / 2, y), labels[1], fill=black)
    return np.asarray(picture)


def north_up(scores, transform):
    """``scores`` and their ``transform`` as a picture shows them, north up and east right: a
    raster stored south up (its rows from the south) or east to west is flipped, or it
    reads upside down, its colour bar drawn north of it with mirrored labels. A rotated grid
    is left as it is (its world file turns the picture)."""
    from affine import Affine

    rows, cols = scores.shape
    if transform.b == transform.d == 0:
        if transform.e > 0:
            scores, transform = scores[::-1], transform * Affine(1, 0, 0, 0, -1, rows)
        if transform.a < 0:
            scores, transform = scores[:, ::-1], transform * Affine(-1, 0, cols, 0, 1, 0)
    return np.ascontiguousarray(scores), transform


def world_file_text(transform):
    """The six lines of an ESRI world file: pixel size and rotation terms, then the centre
    of the top-left pixel."""
    x, y = transform @ (0.5, 0.5)
    return "\n".join(f"{v + 0.0:.12g}" for v in (transform.a, transform.d, transform.b,    # not -0
                                                 transform.e, x, y)) + "\n"


def _gcp_aux_xml(gcps, crs, scale):
    """GDAL's sidecar with the heatmap's ground control points, their pixel and line divided
    by the picture's decimation (``scale``: heatmap pixels per picture pixel, across, down)."""
    from xml.sax.saxutils import quoteattr

    points = "".join(f'    <GCP Id={quoteattr(str(g.id))} Pixel="{g.col / scale[0]!r}" '
                     f'Line="{g.row / scale[1]!r}" X="{g.x!r}" Y="{g.y!r}" Z="{g.z or 0.0!r}"/>\n'
                     for g in gcps)
    projection = f" Projection={quoteattr(crs.to_wkt())}" if crs is not None else ""
    return f"<PAMDataset>\n  <GCPList{projection}>\n{points}  </GCPList>\n</PAMDataset>\n"


def _aux_xml(crs):
    """GDAL's sidecar with the picture's CRS; without one, a sidecar that names none."""
    from xml.sax.saxutils import escape

    if crs is None:
        return "<PAMDataset>\n</PAMDataset>\n"
    return f"<PAMDataset>\n  <SRS>{escape(crs.to_wkt())}</SRS>\n</PAMDataset>\n"
