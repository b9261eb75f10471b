"""The thesis code's ResNet generator and critic, convolving along the spectral axis.

Both networks follow the thesis (section 4.3 and its public code): five residual blocks, no
normalisation, ReLU, a dense layer between the latent vector (or the critic score) and the
convolutions, tanh on the generator output. Each block's shortcut and its second convolution
change the spectral length with a kernel-2, stride-2 convolution (transposed in the generator);
its other convolution keeps the length (kernel 3, "same").

Any band count: the thesis code reached 20 bands from a spectral length of 1 by doubling or adding one
(1, 2, 4, 5, 10, 20). We instead halve, rounding up, from the band count backwards
(20, 10, 5, 3, 2, 1; 205 bands start from 7). An odd length is produced by cropping the first
output of the transposed convolution (padding 1, output padding 1) and consumed by padding one
zero in front of the critic's convolution, which mirrors it. Every band count thus runs through
the same five kernel-2 blocks with no resampling layer and no wasted outputs. Adaptive pooling
was rejected because it averages neighbouring bands unevenly and bakes the length into the
exported graph anyway; padding to a power of two wastes up to half of the generator's outputs
and trains values that are thrown away.

Window 1 (the default) uses a channels-last formulation, tensors (N, length, channels): a
kernel-2 stride-2 convolution over a 1x1 window is exactly a matrix product followed by a
reshape, and the same-length convolution one product over three shifted copies; this is the
shape torch trains. The ONNX export does not keep it: every layer is then an affine map of the
pixel's flattened activations, and hsanomaly.training.export lowers each network to a chain of
dense Gemm nodes, which onnxruntime runs faster than these products with their pads
and shifted copies (docs/training/graphs.md).
Windows of 3 or 5 pixels use Conv3d over (band, row, col) with a 3x3 spatial kernel and
spatial padding 1, so the networks also convolve spatially.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .. import defaults

BLOCKS = 5


def spectral_lengths(bands, blocks=BLOCKS):
    """Spectral length before each block and after the last: halving rounded up, from ``bands``."""
    lengths = [int(bands)]
    for _ in range(blocks):
        lengths.append((lengths[-1] + 1) // 2)
    return lengths[::-1]


def generator_widths(dim):
    """Channel counts of the thesis code's generator: 16, 16, 8, 2, 1, 1 times DIM."""
    return [16 * dim, 16 * dim, 8 * dim, 2 * dim, dim, dim]


class _PixelSameConv(nn.Module):
    """Kernel-3 'same' spectral convolution on (N, length, channels)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.linear = nn.Linear(3 * cin, cout)

    def forward(self, x):
        padded = F.pad(x, (0, 0, 1, 1))
        return self.linear(torch.cat([padded[:, :-2], x, padded[:, 2:]], dim=-1))


class _PixelUp(nn.Module):
    """Kernel-2 stride-2 transposed spectral convolution; ``crop`` drops the first output."""

    def __init__(self, cin, cout, length_in, crop):
        super().__init__()
        self.linear = nn.Linear(cin, 2 * cout)
        self.shape = (2 * length_in, cout)
        self.crop = int(crop)

    def forward(self, x):
        return self.linear(x).reshape(-1, *self.shape)[:, self.crop:]


class _PixelDown(nn.Module):
    """Kernel-2 stride-2 spectral convolution; ``pad`` adds a zero in front of an odd length."""

    def __init__(self, cin, cout, length_in, pad):
        super().__init__()
        self.linear = nn.Linear(2 * cin, cout)
        self.pad = int(pad)
        self.shape = ((length_in + self.pad) // 2, 2 * cin)

    def forward(self, x):
        if self.pad:
            x = F.pad(x, (0, 0, 1, 0))
        return self.linear(x.reshape(-1, *self.shape))


class _PixelLayout:
    """Window 1: tensors are (N, length, channels)."""

    same = _PixelSameConv
    up = _PixelUp
    down = _PixelDown

    def __init__(self, window):
        self.window = window

    def from_flat(self, h, channels, length):
        return h.reshape(-1, length, channels)

    def from_image(self, x, bands):
        return x.reshape(-1, bands, 1)

    def to_image(self, h, bands):
        return h.reshape(-1, bands, 1, 1)


def _window_same(cin, cout):
    return nn.Conv3d(cin, cout, 3, padding=1)


def _window_up(cin, cout, length_in, crop):
    return nn.ConvTranspose3d(cin, cout, (2, 3, 3), stride=(2, 1, 1), padding=(int(crop), 1, 1),
                              output_padding=(int(crop), 0, 0))


def _window_down(cin, cout, length_in, pad):
    return nn.Conv3d(cin, cout, (2, 3, 3), stride=(2, 1, 1), padding=(int(pad), 1, 1))


class _WindowLayout:
    """Windows 3, 5, ...: tensors are (N, channels, length, rows, cols)."""

    same = staticmethod(_window_same)
    up = staticmethod(_window_up)
    down = staticmethod(_window_down)

    def __init__(self, window):
        self.window = window

    def from_flat(self, h, channels, length):
        return h.reshape(-1, channels, length, self.window, self.window)

    def from_image(self, x, bands):
        return x.reshape(-1, 1, bands, self.window, self.window)

    def to_image(self, h, bands):
        return h.reshape(-1, bands, self.window, self.window)


def _layout(window):
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    return _PixelLayout(window) if window == 1 else _WindowLayout(window)


class _UpBlock(nn.Module):
    def __init__(self, layout, cin, cout, length_in, crop):
        super().__init__()
        self.shortcut = layout.up(cin, cout, length_in, crop)
        self.resample = layout.up(cin, cout, length_in, crop)
        self.conv = layout.same(cout, cout)

    def forward(self, x):
        return self.shortcut(x) + self.conv(F.relu(self.resample(F.relu(x))))


class _DownBlock(nn.Module):
    def __init__(self, layout, cin, cout, length_in, pad):
        super().__init__()
        self.shortcut = layout.down(cin, cout, length_in, pad)
        self.conv = layout.same(cin, cin)
        self.resample = layout.down(cin, cout, length_in, pad)

    def forward(self, x):
        return self.shortcut(x) + self.resample(F.relu(self.conv(F.relu(x))))


class Generator(nn.Module):
    """z (N, latent_dim) -> x (N, bands, window, window) in [-1, 1]."""

    def __init__(self, bands, window=1, dim=defaults.TRAIN_DIM,
                 latent_dim=defaults.TRAIN_LATENT_DIM):
        super().__init__()
        self.bands, self.window, self.dim, self.latent_dim = bands, window, dim, latent_dim
        self.layout = _layout(window)
        self.lengths = spectral_lengths(bands)
        self.widths = generator_widths(dim)
        self.project = nn.Linear(latent_dim, self.widths[0] * self.lengths[0] * window * window)
        self.blocks = nn.Sequential(*(
            _UpBlock(self.layout, self.widths[i], self.widths[i + 1], self.lengths[i],
                     crop=self.lengths[i + 1] < 2 * self.lengths[i])
            for i in range(BLOCKS)))
        self.to_bands = self.layout.same(dim, 1)

    def forward(self, z):
        h = self.layout.from_flat(self.project(z), self.widths[0], self.lengths[0])
        h = self.to_bands(F.relu(self.blocks(h)))
        return torch.tanh(self.layout.to_image(h, self.bands))


class Critic(nn.Module):
    """x (N, bands, window, window) -> (score (N,), features (N, F)); high score = looks real.

    ``features`` is the penultimate layer (after the last ReLU), for feature-matching scores.
    """

    def __init__(self, bands, window=1, dim=defaults.TRAIN_DIM):
        super().__init__()
        self.bands, self.window, self.dim = bands, window, dim
        self.layout = _layout(window)
        self.lengths = spectral_lengths(bands)[::-1]
        self.widths = generator_widths(dim)[::-1]
        self.from_bands = self.layout.same(1, dim)
        self.blocks = nn.Sequential(*(
            _DownBlock(self.layout, self.widths[i], self.widths[i + 1], self.lengths[i],
                       pad=self.lengths[i] % 2 == 1)
            for i in range(BLOCKS)))
        self.n_features = self.widths[-1] * self.lengths[-1] * window * window
        self.head = nn.Linear(self.n_features, 1)

    def forward(self, x):
        h = self.blocks(self.from_bands(self.layout.from_image(x, self.bands)))
        features = F.relu(h).reshape(-1, self.n_features)
        return self.head(features).reshape(-1), features
