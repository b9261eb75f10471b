import click


@click.command()
@click.argument("heatmap", type=click.Path(dir_okay=False))
@click.argument("truth", type=click.Path(dir_okay=False))
@click.option("--outer", type=click.Path(dir_okay=False),
              help="Outer target mask: pixels in it but not in TRUTH are ambiguous and excluded.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False),
              help="Write ROC, semi-log ROC, histogram and heatmap PNGs into this directory.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the full report (overall and per target) as JSON.")
def evaluate(heatmap, truth, outer, plots_dir, json_path):
    """Score anomaly HEATMAP (band 1 of a raster) against TRUTH (non-zero = target):
    AUC, logAUC, lgFAR overall and per target (connected components T1..Tn)."""
    from pathlib import Path

    from ..evaluation.plots import write_plots
    from ..evaluation.report import evaluate_files, format_summary, write_json
    from ..io.atomic import check_writable

    if json_path:
        check_writable(json_path)
    report, scores, truth_mask, outer_mask = evaluate_files(heatmap, truth, outer)
    click.echo(format_summary(report))
    if plots_dir:
        paths = write_plots(report, scores, truth_mask, plots_dir, title=Path(heatmap).stem,
                            outer=outer_mask)
        click.echo(f"{plots_dir}: {', '.join(p.name for p in paths.values())}")
    if json_path:
        write_json(report, json_path)
        click.echo(f"{json_path}: report")
