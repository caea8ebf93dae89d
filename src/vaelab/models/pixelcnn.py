"""Conv encoder + gated PixelCNN decoder with Bernoulli pixels (Skip-VAE's MNIST CNN, Dieng et al. 2019).

The decoder is autoregressive in raster order: layer 0 is a masked convolution of type A (a pixel does not
see itself), the others type B, each with a gated activation tanh(a) * sigmoid(b) and a residual 1x1
convolution; ``decode(z, batch)`` returns the logits of every pixel given the pixels before it in
``batch["x"]`` (teacher forcing). z enters as a feature map (Linear(z -> z_channels x H x W)) through an
unmasked convolution added to layer 0's pre-activation (standard: concatenated at layer 0) or to every
layer's (``skip``). Single-stack masked convolutions: the receptive field has PixelCNN's blind spot, the
output stays causal. Reference sizes: 8 layers x 32 channels, kernel 3 (7 for layer 0 here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError
from vaelab.models.base import Batch, LatentVariableModel
from vaelab.models.bernoulli_mlp import bernoulli_nll, check_bernoulli_data
from vaelab.models.gaussian import DiagonalGaussian


class MaskedConv2d(nn.Conv2d):
    """A same-padded convolution whose kernel sees only pixels above, and left on the same row (type A:
    strictly; type B: the centre too)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type={mask_type!r} must be 'A' or 'B'")
        mask = torch.ones_like(self.weight)
        centre = kernel_size // 2
        mask[:, :, centre, centre + (mask_type == "B") :] = 0
        mask[:, :, centre + 1 :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class GatedLayer(nn.Module):
    """h -> h + 1x1(tanh(a) * sigmoid(b)), [a, b] = masked_conv(h) (+ conv(z map))."""

    def __init__(
        self, in_channels: int, channels: int, kernel: int, mask_type: str, z_channels: int | None, residual: bool
    ):
        super().__init__()
        self.conv = MaskedConv2d(in_channels, 2 * channels, kernel, mask_type)
        self.z_conv = nn.Conv2d(z_channels, 2 * channels, 3, padding=1) if z_channels else None
        self.residual = residual  # never at layer 0, where it would pass x_i itself to output i
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, h: torch.Tensor, z_map: torch.Tensor) -> torch.Tensor:
        pre = self.conv(h)
        if self.z_conv is not None:
            pre = pre + self.z_conv(z_map)
        a, b = pre.chunk(2, dim=1)
        out = self.proj(torch.tanh(a) * torch.sigmoid(b))
        return h + out if self.residual else out


class PixelCNNVAE(LatentVariableModel):
    """x (B, C, H, W) in [0, 1] -> conv encoder -> q(z|x) -> gated PixelCNN logits (B, C, H, W)."""

    def __init__(
        self,
        data: DataSpec,
        latent_dim: int = 32,
        encoder_channels: Sequence[int] = (32, 64),
        layers: int = 8,
        channels: int = 32,
        kernel: int = 3,
        first_kernel: int = 7,
        z_channels: int = 1,
        skip: bool = False,
    ):
        super().__init__()
        if len(data.x_shape) != 3:
            raise ConfigError(
                f"model=pixelcnn needs image data (C, H, W); data={data.name} has x_shape "
                f"{tuple(data.x_shape)}; use data=mnist or fashion_mnist"
            )
        check_bernoulli_data(data, "pixelcnn")
        if latent_dim < 1 or layers < 1 or channels < 1 or z_channels < 1:
            raise ConfigError(
                f"model.latent_dim={latent_dim}, model.layers={layers}, model.channels={channels} "
                f"and model.z_channels={z_channels} must all be >= 1"
            )
        if kernel % 2 == 0 or first_kernel % 2 == 0:
            raise ConfigError(f"model.kernel={kernel} and model.first_kernel={first_kernel} must be odd")
        c, h, w = data.x_shape
        self.latent_dim, self.x_shape, self.skip, self.z_channels = latent_dim, tuple(data.x_shape), skip, z_channels
        convs: list[nn.Module] = []
        previous = c
        for width in encoder_channels:
            convs += [nn.Conv2d(previous, width, 4, stride=2, padding=1), nn.ReLU()]
            previous = width
        self.encoder_conv = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.encoder_conv(torch.zeros(1, *data.x_shape)).shape[1]
        self.encoder_head = nn.Linear(flat, 2 * latent_dim)
        self.z_map = nn.Linear(latent_dim, z_channels * h * w)
        self.layers = nn.ModuleList(
            GatedLayer(
                c if i == 0 else channels,
                channels,
                first_kernel if i == 0 else kernel,
                "A" if i == 0 else "B",
                z_channels if (i == 0 or skip) else None,
                residual=i > 0,
            )
            for i in range(layers)
        )
        self.out = nn.Conv2d(channels, c, 1)

    def encode(self, batch: Batch) -> DiagonalGaussian:
        mean, logvar = self.encoder_head(self.encoder_conv(batch["x"])).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        z_map = self.z_map(z).view(-1, self.z_channels, *self.x_shape[1:])
        h = batch["x"]
        for layer in self.layers:
            h = layer(h, z_map)
        return self.out(torch.relu(h))

    def reconstruction_nll(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        return bernoulli_nll(x, decoded)

    def reconstruction(self, decoded: torch.Tensor) -> torch.Tensor:
        """Per-pixel probabilities given the true preceding pixels (teacher forcing), not a sample."""
        return torch.sigmoid(decoded)
