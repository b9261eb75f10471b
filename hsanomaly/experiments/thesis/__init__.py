"""The thesis reproduction: Eide (2018)'s experiments on public scenes, written by one call into
a Markdown file with PNG figures (``hsanomaly thesis``, ``make thesis``; docs/report.md).

Per scene, with models trained on the scene itself through the benchmark's ModelCache, one
function per experiment (``experiments.py``):

- critic vs reconstruction score, with RX and GMM for reference (thesis figure 12), their
  heatmaps (figure 13), the scene against its reconstruction G(z*) (figure 14) and per-target
  ROC curves (figure 21);
- training on background only vs fully unsupervised (figure 15);
- the z-norm penalty C2 of the reconstruction cost (figure 17);
- the critic after half the iterations, with latent size 4 and 64 (figure 19);
- the latent search: the thesis's 4x50 and 16x100 against the fast solver (figure 20);
- 1x1 against larger windows (section 5.5).

The thesis's findings (``config.THESIS_FINDINGS``) are checked against the numbers measured
here (``document.check_findings``), so the document says where the public scenes agree.
"""

import contextlib
import json
import os
import re
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

from ...errors import HsanomalyError, ignoring
from ...quicklook import png_check
from ...io.atomic import drawing_folder, private_temporary, staged
from ...io.ownership import has_json_keys, is_own_png, starts_with
from ...io.paths import check_report_folder
from ...runtime import training_unavailable
from ...spelling import spell
from ...scorers import gan
from ..cache import ModelCache
from ..pool import map_scenes
from ..scenes import find_scenes, select_scenes
from .config import THESIS_FINDINGS, ThesisConfig
from .document import TITLE, check_findings, format_thesis
from .experiments import EXPERIMENTS, SceneResult, SceneRun

OUTPUT = "report.md"      # the document's file name in the output folder


def run_scene(scene, data, models, config, figures, log):
    """Every experiment on one loaded scene (the window one only with ``large_window``)."""
    run = SceneRun(scene, data, models, config, figures, log)
    with _trained_as_the_thesis():
        for name, experiment in EXPERIMENTS.items():
            if name == "window" and not config.large_window:
                continue
            log(f"  {name}")
            run.result.rows[name] = experiment(run)
    return run.result


@contextlib.contextmanager
def _trained_as_the_thesis():
    """The reproduction scores models trained as the thesis trained them, on purpose: the
    scores' advice to train otherwise (``--whiten`` for recon) is not for it."""
    with ignoring(message=".*" + re.escape(gan.TRAINING_ADVICE)):
        yield


def thesis_scene(scene, config, figures, models_root, log=None):
    """Load ``scene`` and run every experiment on it."""
    data = scene.load()
    known = data.truth[data.evaluated]       # checked up front, but for the cube's own nodata
    if not known.any() or known.all():
        raise HsanomalyError(f"{scene.path}: no {'target' if not known.any() else 'background'} "
                             "pixel in the ground truth where the scene has data")

    def scene_log(message):
        if log:
            log(f"{scene.name}: {message.strip()}")

    models = ModelCache(models_root, config.iterations, scene_log)
    return run_scene(scene, data, models, config, figures, scene_log)


def generate_thesis(data_dir, out_dir="docs", config=None, models_dir=None, jobs=1, log=None,
                    overwrite=False):
    """Run the experiments on ``config.scenes`` under ``data_dir`` and write ``out_dir``/report.md,
    ``out_dir``/figures/*.png and ``out_dir``/figures/report.json; returns the document's path.

    models_dir: keep (and reuse) trained models there, e.g. the benchmark's ``--models``.
    jobs: run this many scenes at a time in worker processes (one torch thread each).
    overwrite: replace files there that an earlier reproduction did not write (refused
    otherwise, before any work).
    """
    config = config or ThesisConfig()
    log = log or (lambda message: None)
    unavailable = training_unavailable()
    if unavailable and not models_dir:     # with a model cache, every model may be there already
        raise HsanomalyError(f"the thesis reproduction trains its models, and {unavailable}")
    out = Path(out_dir)
    figures = out / "figures"
    scenes = select_scenes(find_scenes(data_dir), list(config.scenes))
    for scene in scenes:            # before hours of experiments on the scenes before it
        scene.check_truth(classes=True)
    check_report_folder(out, spell("out", python="out_dir"), _outputs(out, figures, scenes), overwrite)
    if models_dir:
        models = ModelCache(models_dir)
        for scene in scenes:
            for iterations in {config.iterations, config.early_iterations,
                               config.window_iterations}:
                models.check(scene, config.seed, iterations)
    made = [folder for folder in (figures, *figures.parents) if not folder.exists()]
    figures.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        # the figures are drawn into a private folder inside ``figures``, then replace the
        # earlier ones together with the document that describes them
        with private_temporary("hsanomaly-thesis") as workdir, \
                drawing_folder(figures) as drawn:
            root = Path(models_dir or Path(workdir) / "models")
            work = [(scene, config, Path(drawn), root) for scene in scenes]
            results = map_scenes(thesis_scene, work, jobs, log)
            checks = check_findings(results, config)
            path = out / OUTPUT
            with staged() as stage:
                for png in sorted(Path(drawn).glob("*.png")):
                    os.replace(png, stage.path(figures / png.name, check=png_check, create=False))
                stage.path(figures / "report.json").write_text(json.dumps(
                    {"config": asdict(config), "scenes": [asdict(r) for r in results],
                     "checks": checks}, indent=1) + "\n", encoding="utf-8")
                stage.path(path).write_text(format_thesis(
                    results, config, checks, time.perf_counter() - start, figures.name),
                    encoding="utf-8")
    except BaseException:
        for folder in made:             # nothing done: leave no empty folder it made
            if any(folder.iterdir()):
                break
            folder.rmdir()
        raise
    return path


def _outputs(out, figures, scenes):
    """(path, is_own, kind) of the files a reproduction of ``scenes`` may replace: the document,
    its JSON and every PNG in ``figures`` named after one of the scenes (``SceneRun.fig``)."""
    if figures.exists() and not figures.is_dir():
        raise HsanomalyError(f"{figures}: exists and is not a directory; the figures go there")
    prefixes = tuple(f"{scene.path.stem}-" for scene in scenes)
    pngs = sorted(p for p in figures.glob("*.png") if p.name.startswith(prefixes)) \
        if figures.is_dir() else []
    return ([(out / OUTPUT, partial(starts_with, first_line=TITLE), "a thesis reproduction"),
             (figures / "report.json", partial(has_json_keys, keys=("config", "scenes", "checks")),
              "a thesis reproduction's results")]
            + [(png, is_own_png, "a thesis figure") for png in pngs])


__all__ = ["THESIS_FINDINGS", "SceneResult", "ThesisConfig", "check_findings", "generate_thesis",
           "run_scene"]
