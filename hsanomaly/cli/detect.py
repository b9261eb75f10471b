import click

from ..scorers import SCORES


def _far(value):
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number nor 'auto'") from None


@click.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--score", type=click.Choice(SCORES), default=None,
              help="Anomaly score (default context: the GAN residual times local RX). GAN scores without --model train a quick "
                   "model on SRC first (needs torch) and keep it as DST's stem + .model.")
@click.option("--model", type=click.Path(), help="Model bundle from `hsanomaly train`.")
@click.option("--solver", type=click.Choice(["fast", "seed"]), default=None,
              help="Latent search for recon/anogan: fast (default) or the thesis's restarts x steps.")
@click.option("--restarts", type=int, default=None, help="Seed solver: random restarts (16).")
@click.option("--steps", type=int, default=None, help="Seed solver: gradient steps per restart (100).")
@click.option("--codebook", type=int, default=None,
              help="Fast solver: codebook entries (65536); fewer build faster, more start closer.")
@click.option("--c1", type=float, default=None, help="Weight of ||x - G(z)|| in the reconstruction cost (1).")
@click.option("--c2", type=float, default=None, help="Weight of ||z|| in the reconstruction cost (0).")
@click.option("--lam", type=float, default=None, help="anogan: weight of the critic-feature distance (0.1).")
@click.option("--outer", type=int, default=None, help="lrx: outer window (15).")
@click.option("--guard", type=int, default=None, help="lrx: guard window (5).")
@click.option("--recon-out", type=click.Path(dir_okay=False), help="Write the reconstruction G(z*) here.")
@click.option("--latent-out", type=click.Path(dir_okay=False), help="Write the latent z* raster here.")
@click.option("--convergence-out", type=click.Path(dir_okay=False),
              help="Write the latent search's convergence band here.")
@click.option("--polygons", type=click.Path(dir_okay=False), help="Write target polygons (GeoPackage).")
@click.option("--threshold", type=float, default=None, help="Score threshold for --polygons.")
@click.option("--far", default=None, help="False-alarm rate for the polygon threshold, or 'auto'.")
@click.option("--png", type=click.Path(dir_okay=False), help="Also write a quick-look PNG heatmap.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="onnxruntime provider.")
@click.option("--threads", type=int, default=None, help="onnxruntime intra-op threads.")
@click.option("--tile", type=int, default=256, show_default=True, help="Tile size in pixels.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its finished tiles.")
@click.option("--workers", type=int, default=None, help="Score tiles on a local Dask cluster of N processes.")
@click.option("--scheduler", default=None, help="Score tiles on the Dask cluster at this address.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def detect(src, dst, score, model, solver, restarts, steps, codebook, c1, c2, lam, outer, guard,
           recon_out, latent_out, convergence_out, polygons, threshold, far, png, device, threads,
           tile, resume, workers, scheduler, quiet):
    """Score raster SRC and write the anomaly heatmap GeoTIFF DST."""
    from ..api import detect_anomalies

    options = {k: v for k, v in dict(solver=solver, restarts=restarts, steps=steps,
                                     codebook=codebook, c1=c1, c2=c2, lam=lam, outer=outer,
                                     guard=guard, device=device,
                                     threads=threads).items() if v is not None}
    extras = {k: v for k, v in dict(recon=recon_out, latent=latent_out,
                                    convergence=convergence_out).items() if v}
    result = detect_anomalies(src, dst, score=score, model=model, options=options, extras=extras,
                              polygons=polygons, threshold=threshold, far=_far(far), png=png,
                              tile=tile, resume=resume, workers=workers, scheduler=scheduler,
                              progress=not quiet)
    click.echo(f"{dst}: {result.scorer.name} heatmap, {result.tiles} tiles in {result.seconds:.1f} s"
               + (f" ({result.tiles_resumed} resumed)" if result.tiles_resumed else ""))
    if result.model and not model:
        click.echo(f"{result.model}: model trained on {src}; reuse it with --model")
    for name, path in result.outputs.items():
        if name != "score":
            click.echo(f"{path}: {name}")
    if result.polygons is not None:
        click.echo(f"{polygons}: {result.polygons} target polygons")
