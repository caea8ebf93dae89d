"""Image and sequence networks for the CVAEs: a conv-residual encoder and a conv-transpose decoder for
(C, H, W) images with H and W divisible by 4 (MNIST: 1 x 28 x 28), and an LSTM that summarises a sequence of
frames by its last output."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(relu(x)))), channels and size kept."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ConvResEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_features) with out_features = 2 * channels * (H / 4) * (W / 4): two stride-2
    4x4 convolutions (channels, then 2 * channels), each followed by a residual block, then flattened."""

    def __init__(self, in_channels: int, height: int, width: int, channels: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
            ResidualBlock(channels),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1),
            ResidualBlock(2 * channels),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.out_features = 2 * channels * (height // 4) * (width // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvTransposeDecoder(nn.Module):
    """(B, in_features) -> (B, C, H, W) unbounded values (the model applies a sigmoid): a linear layer to
    (2 * channels, H / 4, W / 4), a residual block, then two stride-2 4x4 transposed convolutions."""

    def __init__(self, in_features: int, out_channels: int, height: int, width: int, channels: int = 32):
        super().__init__()
        self.start = (2 * channels, height // 4, width // 4)
        self.linear = nn.Linear(in_features, 2 * channels * (height // 4) * (width // 4))
        self.net = nn.Sequential(
            ResidualBlock(2 * channels),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1),
            ResidualBlock(channels),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, out_channels, 4, stride=2, padding=1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(self.linear(h).view(-1, *self.start))


class SequenceSummary(nn.Module):
    """A sequence of frames (B, T, frame_dim) (or flattened, (B, T * frame_dim)) -> the last output of a
    one-layer LSTM, (B, hidden)."""

    def __init__(self, frame_dim: int, hidden: int = 32):
        super().__init__()
        self.frame_dim = frame_dim
        self.lstm = nn.LSTM(frame_dim, hidden, batch_first=True)
        self.out_features = hidden

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.lstm(frames.reshape(len(frames), -1, self.frame_dim))[0][:, -1]
