"""Conditional VAEs of Zheng et al. (2022) with the paper's design choices as options, and the learnable-gamma
Gaussian likelihood N(f(z, c), gamma I) of the kappa-simple VAE.

- ``prior``: ``standard`` N(0, I) or ``learned`` N(mu(c), diag sigma^2(c)) (then active dims are read from
  the ratio E_x[sigma_j^2(x, c) / sigma_pj^2(c)]);
- ``share_encoder_prior``: the learned prior is the encoder itself applied to the condition alone (x set to
  zero for mlp/conv; the sequence without its last frame for lstm), as the reference's ``sharing``;
- ``prior_in_decoder``: the KL uses N(0, I) and the decoder first maps z -> mu(c) + sigma(c) z;
- ``gated_decoder``: the decoder's condition network also outputs gates g(c) = sigmoid(.) in (0, 1)^kappa and
  decodes g(c) * z ("attention"); ``gates(batch)`` returns them (a dim with mean gate > 0.1 is active);
- ``architecture``: ``mlp`` (any x, flattened), ``conv`` (images: conv-residual encoder, conv-transpose
  decoder), ``lstm`` (sequences: c is the frames before x; the encoder reads [c, x], the condition networks
  read c);
- ``use_condition: false`` drops c everywhere: the same networks as a plain VAE (the baseline of the tables).

The encoder, the decoder and the prior each have their own condition network (``condition_hidden`` ->
``condition_features``), as in the reference code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError
from vaelab.models.base import Batch, check_real_valued
from vaelab.models.conv_nets import ConvResEncoder, ConvTransposeDecoder, SequenceSummary
from vaelab.models.gaussian import DiagonalGaussian
from vaelab.models.gaussian_vae import LearnableGammaModel
from vaelab.models.networks import mlp

ARCHITECTURES = ("mlp", "conv", "lstm")
PRIORS = ("standard", "learned")


def needed_latent_dims(data: DataSpec, use_condition: bool) -> int | None:
    """The most active dims the data asks for: the expected AD (per group: the largest) with a condition,
    the manifold dimension without; None when the data does not say."""
    truth = data.ground_truth
    if use_condition and "expected_active_dims" in truth:
        return truth["expected_active_dims"]
    if use_condition and "expected_active_dims_per_group" in truth:
        return max(truth["expected_active_dims_per_group"])
    return truth.get("manifold_dim")


class ConditionalVAE(LearnableGammaModel):
    """q(z | x, c) = N(mu, diag sigma^2) over latent_dim (kappa) dims, p(z | c), x_hat = f(z, c) shaped like x."""

    def __init__(
        self,
        data: DataSpec,
        latent_dim: int = 20,
        architecture: str = "mlp",
        use_condition: bool = True,
        prior: str = "standard",
        share_encoder_prior: bool = False,
        prior_in_decoder: bool = False,
        gated_decoder: bool = False,
        encoder_hidden: Sequence[int] = (64,),
        decoder_hidden: Sequence[int] = (64,),
        condition_hidden: Sequence[int] = (32,),
        condition_features: int = 20,
        channels: int = 32,
        lstm_hidden: int = 32,
        output_sigmoid: bool = False,
        activation: str = "relu",
        log_gamma_init: float = 0.0,
        learn_gamma: bool = True,
        gamma_floor: float = 1e-8,
    ):
        super().__init__()
        self._check(
            data,
            latent_dim,
            architecture,
            use_condition,
            prior,
            share_encoder_prior,
            prior_in_decoder,
            gated_decoder,
            condition_features,
        )
        self.latent_dim, self.architecture = latent_dim, architecture
        self.x_shape, self.x_dim = data.x_shape, data.x_dim
        self.c_dim = data.condition_dim if use_condition else 0
        self.learned_prior, self.share_encoder_prior = prior == "learned", share_encoder_prior
        self.prior_in_decoder, self.gated, self.output_sigmoid = prior_in_decoder, gated_decoder, output_sigmoid
        self._condition_hidden, self._lstm_hidden, self._activation = condition_hidden, lstm_hidden, activation
        k, cond = latent_dim, condition_features if self.c_dim else 0

        if architecture == "conv":
            self.encoder_features = ConvResEncoder(data.x_shape[0], *data.x_shape[1:], channels)
            features = self.encoder_features.out_features
        elif architecture == "lstm":
            self.encoder_features = SequenceSummary(self.x_dim, lstm_hidden)
            features, cond = self.encoder_features.out_features, 0  # c is part of the encoder's sequence
        else:
            features = self.x_dim
        self.encoder_condition = self._condition_net(cond) if cond else None
        self.encoder_head = mlp(features + cond, encoder_hidden, 2 * k, activation)

        self.prior_net = (
            self._condition_net(2 * k)
            if ((self.learned_prior and not share_encoder_prior) or prior_in_decoder)
            else None
        )
        decoder_cond = condition_features if self.c_dim else 0
        self.decoder_condition = self._condition_net(decoder_cond + (k if gated_decoder else 0)) if self.c_dim else None
        if architecture == "conv":
            self.decoder = ConvTransposeDecoder(k + decoder_cond, data.x_shape[0], *data.x_shape[1:], channels)
        else:
            self.decoder = mlp(k + decoder_cond, decoder_hidden, self.x_dim, activation)
        self.decoder_cond_features = decoder_cond
        self.init_gamma(log_gamma_init, learn_gamma, gamma_floor)

    @staticmethod
    def _check(
        data: DataSpec,
        latent_dim: int,
        architecture: str,
        use_condition: bool,
        prior: str,
        share_encoder_prior: bool,
        prior_in_decoder: bool,
        gated_decoder: bool,
        condition_features: int,
    ) -> None:
        check_real_valued(data, "cvae")
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim={latent_dim} must be >= 1")
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"model.architecture={architecture!r} is not one of {list(ARCHITECTURES)}")
        if prior not in PRIORS:
            raise ConfigError(f"model.prior={prior!r} is not one of {list(PRIORS)}")
        shape = tuple(data.x_shape)
        if architecture == "conv" and not (len(shape) == 3 and shape[1] % 4 == 0 and shape[2] % 4 == 0):
            raise ConfigError(
                f"model.architecture=conv is an image model (x of shape (C, H, W), H and W divisible "
                f"by 4) but data={data.name} has samples of shape {shape}; use model.architecture=mlp"
            )
        if architecture == "lstm" and (len(shape) != 1 or data.condition_dim % shape[0]):
            raise ConfigError(
                f"model.architecture=lstm reads sequences of frames (x a frame of shape (d,), c the "
                f"frames before it) but data={data.name} has x {shape} and c of width "
                f"{data.condition_dim}; use data=arma_sequence or model.architecture=mlp"
            )
        if use_condition and data.condition_dim == 0:
            raise ConfigError(
                f"model=cvae needs a condition c but data={data.name} has none; use a conditional "
                "dataset (data=conditional_manifold, union_manifold, continuous_groups, arma_sequence, "
                "or data=mnist data.condition=true) or set model.use_condition=false"
            )
        uses_c = {
            "model.prior=learned": prior == "learned",
            "model.share_encoder_prior": share_encoder_prior,
            "model.prior_in_decoder": prior_in_decoder,
            "model.gated_decoder": gated_decoder,
            "model.architecture=lstm": architecture == "lstm",
        }
        if not use_condition and any(uses_c.values()):
            raise ConfigError(
                f"{[k for k, v in uses_c.items() if v]} need the condition but model.use_condition="
                "false; set model.use_condition=true or turn them off"
            )
        if share_encoder_prior and prior != "learned":
            raise ConfigError(
                "model.share_encoder_prior=true shares the encoder with a learned prior; set "
                "model.prior=learned (or model.share_encoder_prior=false)"
            )
        if prior_in_decoder and prior == "learned":
            raise ConfigError(
                "model.prior_in_decoder=true folds the learned prior into the decoder (the KL is to "
                "N(0, I)); set model.prior=standard with it, or model.prior_in_decoder=false"
            )
        if use_condition and condition_features < 1:
            raise ConfigError(f"model.condition_features={condition_features} must be >= 1")
        needed = needed_latent_dims(data, use_condition)
        if needed is not None and latent_dim < needed:
            raise ConfigError(
                f"model.latent_dim={latent_dim} is below the {needed} active dims data={data.name} "
                f"needs; set model.latent_dim >= {needed}"
            )

    def _condition_net(self, out_features: int) -> nn.Module:
        """c -> (B, out_features): an MLP on the flattened c, or for lstm an LSTM over c's frames then a linear
        layer."""
        if self.architecture == "lstm":
            summary = SequenceSummary(self.x_dim, self._lstm_hidden)
            return nn.Sequential(summary, nn.Linear(summary.out_features, out_features))
        return nn.Sequential(nn.Flatten(), mlp(self.c_dim, self._condition_hidden, out_features, self._activation))

    def _encode(self, x: torch.Tensor | None, c: torch.Tensor | None) -> DiagonalGaussian:
        """q(z | x, c); x None = the condition alone (the shared prior)."""
        if self.architecture == "lstm":
            frames = c.reshape(len(c), -1, self.x_dim)
            if x is not None:
                frames = torch.cat([frames, x.reshape(len(x), 1, self.x_dim)], 1)
            h = self.encoder_features(frames)
        else:
            if x is None:
                x = c.new_zeros(len(c), *self.x_shape)
            h = self.encoder_features(x) if self.architecture == "conv" else x.flatten(1)
            if self.encoder_condition is not None:
                h = torch.cat([h, self.encoder_condition(c)], 1)
        mean, logvar = self.encoder_head(h).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def encode(self, batch: Batch) -> DiagonalGaussian:
        return self._encode(batch["x"], batch["c"] if self.c_dim else None)

    def _prior_params(self, c: torch.Tensor) -> DiagonalGaussian:
        if self.share_encoder_prior:
            return self._encode(None, c)
        mean, logvar = self.prior_net(c).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def prior(self, batch: Batch) -> DiagonalGaussian | None:
        return self._prior_params(batch["c"]) if self.learned_prior else None

    def gates(self, batch: Batch) -> torch.Tensor:
        """The gated decoder's g(c) in (0, 1), shape (B, latent_dim)."""
        if not self.gated:
            raise ValueError("gates() needs model.gated_decoder=true")
        return torch.sigmoid(self.decoder_condition(batch["c"])[:, self.decoder_cond_features :])

    def decode(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        h = z
        if self.c_dim:
            c = batch["c"]
            if self.prior_in_decoder:
                p = self._prior_params(c)
                h = p.mean + (0.5 * p.logvar).exp() * h
            features = self.decoder_condition(c)
            if self.gated:
                h = h * torch.sigmoid(features[:, self.decoder_cond_features :])
                features = features[:, : self.decoder_cond_features]
            h = torch.cat([h, features], 1)
        out = self.decoder(h)
        return (out.sigmoid() if self.output_sigmoid else out).view(-1, *self.x_shape)
