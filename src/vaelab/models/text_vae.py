"""LSTM text VAE (Bowman et al. 2016; the Yahoo model of Kim et al. 2018 and Dieng et al. 2019).

Encoder: embedding -> LSTM over ``<s> w_1 .. w_n </s>`` -> its last hidden state -> (mu, logvar).
Decoder: an LSTM language model over ``<s> w_1 .. w_n`` predicting ``w_1 .. w_n </s>``, with z concatenated to every
input embedding and every layer's initial hidden state h0 = Linear(z) (c0 = 0). ``skip`` (Skip-VAE) also
concatenates z to the inputs of layers > 0 and to the last LSTM output before the vocabulary softmax.
``word_dropout`` (Bowman et al. 2016), in training only: each decoder input word (not ``<s>``) is replaced by
``<unk>`` with this probability, so that the decoder must take more of the sentence from z.

Batches hold ``x`` (B, T) int64 token ids padded with ``<pad>`` (see vaelab.data.text); each batch is cut to its
longest row. The reconstruction term is the summed token cross-entropy in nats per document (``</s>`` counted,
``<s>`` not, padding masked); ``token_count`` gives the predicted tokens per document, so that perplexity is
exp(total NLL / total tokens).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vaelab.data.spec import DataSpec
from vaelab.data.text import PAD, UNK, lengths_of
from vaelab.errors import ConfigError
from vaelab.models.base import Batch, LatentVariableModel
from vaelab.models.gaussian import DiagonalGaussian


def trim(x: torch.Tensor) -> torch.Tensor:
    """The batch cut to its longest row, shape (B, max length)."""
    return x[:, : int(lengths_of(x).max())]


class TextVAE(LatentVariableModel):
    """x (B, T) token ids -> q(z|x) = N(mu, diag sigma^2) over latent_dim dims -> next-token distributions."""

    def __init__(
        self,
        data: DataSpec,
        latent_dim: int = 32,
        embedding_dim: int = 128,
        encoder_hidden: int = 256,
        decoder_hidden: int = 256,
        decoder_layers: int = 1,
        dropout: float = 0.0,
        word_dropout: float = 0.0,
        skip: bool = False,
    ):
        super().__init__()
        if data.vocab_size < 1:
            raise ConfigError(
                f"model=text_vae needs text data (e.g. data=ptb or data=yahoo_local); data={data.name} "
                f"has samples of shape {tuple(data.x_shape)} and no vocabulary"
            )
        for key, value in (
            ("latent_dim", latent_dim),
            ("embedding_dim", embedding_dim),
            ("encoder_hidden", encoder_hidden),
            ("decoder_hidden", decoder_hidden),
            ("decoder_layers", decoder_layers),
        ):
            if value < 1:
                raise ConfigError(f"model.{key}={value} must be >= 1")
        for key, value in (("dropout", dropout), ("word_dropout", word_dropout)):
            if not 0 <= value < 1:
                raise ConfigError(f"model.{key}={value} must be in [0, 1)")
        self.word_dropout = word_dropout
        self.latent_dim, self.skip, self.vocab_size = latent_dim, skip, data.vocab_size
        self.encoder_embedding = nn.Embedding(data.vocab_size, embedding_dim, padding_idx=PAD)
        self.encoder = nn.LSTM(embedding_dim, encoder_hidden, batch_first=True)
        self.to_posterior = nn.Linear(encoder_hidden, 2 * latent_dim)
        self.decoder_embedding = nn.Embedding(data.vocab_size, embedding_dim, padding_idx=PAD)
        self.to_h0 = nn.Linear(latent_dim, decoder_hidden)
        skip_width = latent_dim if skip else 0
        self.decoder = nn.ModuleList(
            nn.LSTM(
                (embedding_dim + latent_dim) if layer == 0 else (decoder_hidden + skip_width),
                decoder_hidden,
                batch_first=True,
            )
            for layer in range(decoder_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.to_logits = nn.Linear(decoder_hidden + skip_width, data.vocab_size)

    def encode(self, batch: Batch) -> DiagonalGaussian:
        x = trim(batch["x"])
        states, _ = self.encoder(self.encoder_embedding(x))  # (B, T, H)
        last = states[torch.arange(len(x)), lengths_of(x) - 1]  # the state after </s>
        mean, logvar = self.to_posterior(last).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The features the vocabulary softmax reads at each position given z (B, latent_dim) and the batch's
        tokens (teacher forcing): (B, T - 1, decoder_hidden [+ latent_dim with skip]) for the batch cut to its
        longest row T; ``logits`` turns them into next-token logits."""
        inputs = trim(batch["x"])[:, :-1]
        if self.training and self.word_dropout > 0:
            dropped = torch.rand(inputs.shape, device=inputs.device) < self.word_dropout
            dropped[:, 0] = False  # <s>
            inputs = inputs.masked_fill(dropped & (inputs != PAD), UNK)
        z_steps = z.unsqueeze(1).expand(-1, inputs.shape[1], -1)
        h = torch.cat([self.dropout(self.decoder_embedding(inputs)), z_steps], dim=-1)
        h0 = self.to_h0(z).unsqueeze(0)
        state = (h0, torch.zeros_like(h0))
        for layer, lstm in enumerate(self.decoder):
            if layer > 0 and self.skip:
                h = torch.cat([h, z_steps], dim=-1)
            h, _ = lstm(h, state)
        h = self.dropout(h)
        if self.skip:
            h = torch.cat([h, z_steps], dim=-1)
        return h

    def logits(self, decoded: torch.Tensor) -> torch.Tensor:
        """Next-token logits (..., vocab) from decode's features (..., width)."""
        return self.to_logits(decoded)

    def reconstruction_nll(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) in nats per document, shape (B,): cross-entropy summed over w_1 .. w_n </s>."""
        targets = x[:, 1 : decoded.shape[1] + 1]
        scored = targets != PAD  # the softmax (most of the cost) runs on these positions only
        nll = torch.zeros(targets.shape, dtype=decoded.dtype, device=decoded.device)
        nll[scored] = F.cross_entropy(self.logits(decoded[scored]), targets[scored], reduction="none")
        return nll.sum(-1)

    def reconstruction(self, decoded: torch.Tensor) -> torch.Tensor:
        """The most likely next token at each position, shape (B, T - 1) int64."""
        return self.logits(decoded).argmax(-1)

    def token_count(self, batch: Batch) -> torch.Tensor:
        """Tokens each document's NLL covers (w_1 .. w_n and </s>, not <s>), shape (B,)."""
        return lengths_of(batch["x"]) - 1
