"""Whether a finished training gave a generator worth scoring with: one whose spectra spread
as the training data's do and lie where they lie. A generator collapsed onto a few spectra (a
few saturated pixels among thousands can do it), an untrained one or one gone astray is
exported all the same, and said: ``recon``, ``critic`` and ``anogan`` would score against it,
while a score led by its rings (the default) barely notices. The held-out Wasserstein
estimate cannot tell: an untrained critic gives about 0, the best it can read."""

import numpy as np

from ..io.checks import warn
from ..spelling import counted, spell

DRAWS = 4096          # latent draws the generator's spread is measured on
# The generator's spread over the data's (median over bands) under which it collapsed or did
# not learn: default trainings of the 8 public scenes and the example gave 0.66-1.3, collapsed
# (5 saturated pixels) 0.084, constant 0-0.002, untrained (1-3 iterations) 0.05-0.06; whitened
# bands spread the data's variance over components a small latent does not span, so healthy
# whitened trainings gave 0.19-0.94 (HYDICE's, recon AUC 0.98-0.99, the lowest), untrained
# ones 0.06. Its mean's distance from the data's, in their standard deviations (median over
# bands), over which it went astray: healthy 0.07-1.2, one seed of eight 2.4 (recon AUC 0.64).
MIN_SPREAD, MIN_WHITENED_SPREAD, MAX_OFFSET = 0.25, 0.1, 2.0
# Fewer bands than this (a multispectral scene) collapsed quick models of 4-7 bands (spread
# 0.10-0.23) where a 13-band one did not (0.86): synthetic Sentinel-2 and Landsat stand-ins
FEW_BANDS = 10


def generator_health(torch, generator, windows, seed, device):
    """{"spread", "offset"} of ``generator`` against training ``windows`` (n, bands, w, w),
    preprocessed, band by band over their centre pixels; drawn from a generator of its own
    (``seed``), not torch's global one."""
    draws = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(DRAWS, generator.latent_dim, generator=draws).to(device)
        fake = generator(z).cpu().numpy()
    c = windows.shape[-1] // 2
    real = np.asarray(windows[:, :, c, c], np.float64)
    fake = np.asarray(fake[:, :, c, c], np.float64)
    spread = real.std(axis=0)
    varied = spread > 0
    return {"spread": float(np.median(fake.std(axis=0)[varied] / spread[varied])),
            "offset": float(np.median(np.abs(fake.mean(axis=0) - real.mean(axis=0))[varied]
                                      / spread[varied]))}


def warn_unhealthy(health, name, training):
    """Say a generator that collapsed or went astray (``generator_health``), why it may have,
    and what it means. ``training``: {"iterations", "bands", "whitened" (bands that spread
    less), "quick" (a quick model, which the heatmap is scored with next)}."""
    if health["spread"] < (MIN_WHITENED_SPREAD if training["whitened"] else MIN_SPREAD):
        bands = training["bands"]
        why = (f"with {counted(bands, 'band')} it always does" if bands < 3 else
               f"with {bands} bands (a multispectral scene) it often does" if bands < FEW_BANDS
               else "a few saturated or extreme pixels can do it (mask them, or declare them "
                    "nodata)")
        warn(f"{name}: the trained generator's spectra spread {health['spread']:.2g} of the "
             f"training data's (a median over bands): it collapsed onto a few spectra, or did "
             f"not learn in {training['iterations']} iterations; {why}. "
             + _meaning(training, few=bands < FEW_BANDS))
    elif health["offset"] > MAX_OFFSET:
        seed = spell("seed")
        warn(f"{name}: the trained generator's spectra lie {health['offset']:.2g} of the "
             f"training data's standard deviations from them (a median over bands): a "
             f"training gone astray. {_meaning(training, f' with another {seed}')}")


def _meaning(training, how="", few=False):
    """What a generator gone wrong means for what is scored with it; ``how``: to do better;
    ``few``: too few bands for a GAN to learn, where a score without one is the remedy."""
    if training["quick"]:
        return "The heatmap's GAN terms are scored against it: " + (
            f"a score without a GAN (lrx or gmm, as {spell('score')}) suits so few bands" if few
            else f"train a model{how} and pass it as {spell('model')}")
    return "recon, critic and anogan would score against it" + (f"; train again{how}" if how else "")
