"""Default QGIS styles stored inside the files we write, so layers open styled anywhere."""

import contextlib

STYLE_TABLE = "layer_styles"      # where QGIS looks for a GeoPackage layer's default style
STYLE_NAME = "hsanomaly targets"

# The targets' style, wherever QGIS opens them (from the GeoPackage's layer_styles table, or as
# the plugin loads them): outlines without fill, so the heatmap beneath stays visible; cyan on a
# black halo, seen over the ramp's dark background and over its bright anomalies alike.
OUTLINES = (("0,0,0,255", 1.2), ("0,229,255,255", 0.6))     # (RGBA, width in mm), drawn in turn
_LINE = """    <layer class="SimpleLine" enabled="1" pass="0" locked="0">
     <Option type="Map">
      <Option type="QString" name="line_color" value="{}"/>
      <Option type="QString" name="line_style" value="solid"/>
      <Option type="QString" name="line_width" value="{}"/>
      <Option type="QString" name="line_width_unit" value="MM"/>
     </Option>
    </layer>
"""
TARGETS_QML = """<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="Symbology">
 <renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0">
  <symbols>
   <symbol type="fill" name="0" alpha="1" clip_to_extent="1" force_rhr="0">
""" + "".join(_LINE.format(colour, width) for colour, width in OUTLINES) + """   </symbol>
  </symbols>
 </renderer-v2>
</qgis>
"""


# one date for what hsanomaly writes into a GeoPackage (a style's update time, the tables'
# last change): the same run writes the same bytes, for pipelines that compare them
FIXED_DATE = "2000-01-01T00:00:00"


def pin_dates(path):
    """Give every table of the GeoPackage ``path`` (one hsanomaly just wrote, not yet in place)
    ``FIXED_DATE`` as its ``gpkg_contents.last_change`` (and its metadata's timestamp),
    which GDAL stamps with the time of writing (done in the file, not through GDAL's
    settings, which the whole process shares), then copy it afresh (``VACUUM INTO``): the
    header's change counter, which counts GDAL's transactions (one fewer when two stamps
    fell in one millisecond), starts over."""
    import os
    import sqlite3

    fresh = f"{path}.fresh"
    with contextlib.closing(sqlite3.connect(path)) as db:
        with db:
            db.execute("UPDATE gpkg_contents SET last_change = ?", (FIXED_DATE + ".000Z",))
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = "
                          "'gpkg_metadata_reference'").fetchone():     # a layer's record's
                db.execute("UPDATE gpkg_metadata_reference SET timestamp = ?",
                           (FIXED_DATE + ".000Z",))
        db.execute("VACUUM INTO ?", (fresh,))
    os.replace(fresh, path)


def write_default_style(path, layer):
    """The layer_styles table QGIS looks for in a GeoPackage, holding TARGETS_QML as default
    for ``layer``: by its geometry column as the file names it (GDAL's ``geom``, not the
    frame's ``geometry``), or QGIS does not match the style to the layer."""
    import sqlite3

    import pandas as pd
    import pyogrio

    with contextlib.closing(sqlite3.connect(path)) as db:
        (geometry_column,), = db.execute(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,))
    style = pd.DataFrame({
        "f_table_catalog": [""], "f_table_schema": [""], "f_table_name": [layer],
        "f_geometry_column": [geometry_column], "styleName": [STYLE_NAME],
        "styleQML": [TARGETS_QML], "styleSLD": [""], "useAsDefault": [True],
        "description": ["target outlines (hsanomaly)"], "owner": [""], "ui": [""],
        "update_time": [FIXED_DATE]})
    pyogrio.write_dataframe(style, path, layer=STYLE_TABLE, driver="GPKG",
                            layer_options={"FID": "id"})


def _read_only(path, query, otherwise):
    """``query(db)`` on SQLite database ``path`` opened read only (nothing is created), or
    ``otherwise`` where it is not one."""
    import sqlite3
    from pathlib import Path

    try:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            return query(db)
    except sqlite3.Error:
        return otherwise


def sqlite_tables(path):
    """{table: its column names} for every table of SQLite database ``path`` (a GeoPackage's
    own included); empty for a file that is not one."""
    def tables(db):
        names = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: {row[0] for row in db.execute("SELECT name FROM pragma_table_info(?)",
                                                    (name,))}
                for name in names}
    return _read_only(path, tables, {})


def layer_description(path, layer):
    """The description GeoPackage ``path`` lists for ``layer`` in ``gpkg_contents``, or None."""
    def read(db):
        row = db.execute("SELECT description FROM gpkg_contents WHERE table_name = ?",
                         (layer,)).fetchone()
        return None if row is None else row[0]
    return _read_only(path, read, None)


def column_value(path, table, column):
    """The value of ``column`` in the first row of ``table`` of SQLite database ``path`` (a
    name either holds as written), or None: no such row, column or database."""
    import sqlite3

    def read(db):
        try:
            row = db.execute(f'SELECT "{column}" FROM "{table}" LIMIT 1').fetchone()
        except sqlite3.OperationalError:          # no such table or column
            return None
        return None if row is None else row[0]
    return _read_only(path, read, None)


def gpkg_tables(path):
    """The tables a GeoPackage lists in ``gpkg_contents``; none for a file that is not one."""
    return _read_only(path, lambda db: {row[0] for row in db.execute(
        "SELECT table_name FROM gpkg_contents")}, set())


def foreign_styles(path, layer):
    """The names of the styles GeoPackage ``path`` holds besides hsanomaly's own of ``layer``
    (a user's "Save Style... In Database" in QGIS), which a rewrite of the file would drop."""
    return _read_only(path, lambda db: sorted(row[0] or "(unnamed)" for row in db.execute(
        f"SELECT styleName FROM {STYLE_TABLE} WHERE NOT (styleName IS ? AND f_table_name IS ?)",
        (STYLE_NAME, layer))), [])
