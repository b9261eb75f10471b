"""The training log as a CSV and a PNG of the loss curves and Wasserstein estimates."""

import csv

import numpy as np

from .wgan import LOG_COLUMNS


def write_csv(path, log):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LOG_COLUMNS)
        for row in log:
            writer.writerow([int(row[0])] + [f"{v:.6g}" for v in row[1:]])


def plot(path, log, title=""):
    """Losses on the left, the critic's Wasserstein estimate (train and held-out) on the right."""
    from ..evaluation.plots import own_style

    own_style(_plot)(path, log, title)


def _plot(path, log, title):
    from ..evaluation.plots import new_figure, save_png

    data = np.asarray(log, dtype=float).reshape(-1, len(LOG_COLUMNS))
    col = {name: data[:, i] for i, name in enumerate(LOG_COLUMNS)}
    fig = new_figure((10, 4))
    losses, distance = fig.subplots(1, 2)
    losses.plot(col["iteration"], col["critic_loss"], label="critic loss")
    losses.plot(col["iteration"], col["generator_loss"], label="generator loss")
    losses.set_xlabel("generator iteration")
    losses.legend()
    distance.plot(col["iteration"], col["wasserstein"], label="training batches")
    distance.plot(col["iteration"], col["val_wasserstein"], label="held-out windows")
    distance.axhline(0, color="grey", lw=0.5)
    distance.set_xlabel("generator iteration")
    distance.set_ylabel("Wasserstein estimate  E[D(real)] - E[D(fake)]")
    distance.legend()
    if title:
        fig.suptitle(title)
    save_png(fig, path, dpi=100)
