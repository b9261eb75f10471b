"""The thesis reproduction's own figure: the scene against its reconstruction (figure 14)."""

import numpy as np

from ...evaluation.plots import new_figure, own_style, save_png

FALSE_COLOUR = (0.8, 0.5, 0.2)    # preprocessed bands (fractions of the band count) shown as RGB
COLOUR_PERCENTILES = (2, 98)


@own_style
def plot_reconstruction(scorer, data, recon, path, title):
    """The scene and its reconstruction G(z*) side by side in false colour (thesis figure 14),
    both in the model's preprocessed units with the scene's colour stretch."""
    bands = recon.shape[0]
    pick = [min(bands - 1, int(f * bands)) for f in FALSE_COLOUR]
    real = np.full_like(recon, np.nan)
    real[:, data.valid] = scorer.bundle.preprocessor.transform(data.cube[:, data.valid].T).T
    low, high = np.nanpercentile(real[pick], COLOUR_PERCENTILES, axis=(1, 2))

    def rgb(cube):
        image = (cube[pick] - low[:, None, None]) / (high - low)[:, None, None]
        return np.nan_to_num(np.clip(np.moveaxis(image, 0, -1), 0, 1))

    fig = new_figure((8, 4.2))
    for ax, image, label in zip(fig.subplots(1, 2), (real, recon), ("scene", "G(z*)")):
        ax.imshow(rgb(image), interpolation="nearest")
        ax.set_title(f"{label}, bands {', '.join(str(b + 1) for b in pick)} as RGB",
                     fontsize="small")
        ax.set_axis_off()
    fig.suptitle(f"{title}: scene and reconstruction (preprocessed units)")
    save_png(fig, path, dpi=110)
