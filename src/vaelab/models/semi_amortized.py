"""SA-VAE (Kim et al. 2018): semi-amortized inference around any LatentVariableModel.

``SemiAmortized(model, steps, lr, momentum, clip, end_to_end, refine_in_eval)`` starts from the encoder's
q0 = N(mean, exp(logvar)) and takes ``steps`` (K) steps of SGD with momentum on each example's negative ELBO
w.r.t. (mean, logvar) (one reparameterised sample per step; the gradient of mean and of logvar each clipped to
norm ``clip`` per example); the refined q_K is used for the decoder's loss. The encoder learns from its own
ELBO (``end_to_end: false``: its gradient reaches the encoder only, not the decoder) or from the refined ELBO
through the K steps (``end_to_end: true``, second-order autograd). ``refine_in_eval``: outside training,
``encode`` returns q_K, so evaluation (KL, MI, AU, probe, the IW-NLL proposal) uses refined posteriors.

``loss`` returns ``loss`` (the refined negative ELBO; in training plus a zero-valued surrogate that carries
the encoder's gradient), ``recon_nll`` and ``kl`` of q_K, and ``encoder_loss``: the negative ELBO of q0 alone
(nats per sample), so metrics.json has ``elbo`` (refined) and ``encoder_loss`` (encoder only).
``kl_weight`` (set by the training module during KL warm-up) weights the KL in the SVI objective and in the
encoder's ELBO. Config: ``inference=sa`` (conf/inference/sa.yaml) wraps whatever ``model=`` is.
"""

from __future__ import annotations

import torch

from vaelab.errors import ConfigError
from vaelab.models.base import Batch, LatentVariableModel
from vaelab.models.gaussian import DiagonalGaussian


class SemiAmortized(LatentVariableModel):
    """Wraps `model` (any LatentVariableModel): same prior, decoder and likelihood, refined posteriors."""

    def __init__(
        self,
        model: LatentVariableModel,
        steps: int = 20,
        lr: float = 0.02,
        momentum: float = 0.5,
        clip: float = 5.0,
        end_to_end: bool = False,
        refine_in_eval: bool = True,
    ):
        super().__init__()
        if steps < 0:
            raise ConfigError(f"inference.steps={steps} must be >= 0")
        if not lr > 0:
            raise ConfigError(f"inference.lr={lr} must be > 0")
        if not 0 <= momentum < 1:
            raise ConfigError(f"inference.momentum={momentum} must be in [0, 1)")
        if clip < 0:
            raise ConfigError(f"inference.clip={clip} must be >= 0 (0: no clipping)")
        self.base = model
        self.latent_dim = model.latent_dim
        self.steps, self.lr, self.momentum, self.clip = steps, lr, momentum, clip
        self.end_to_end, self.refine_in_eval = end_to_end, refine_in_eval
        self.kl_weight = 1.0
        self.progress = None  # set by vaelab.evaluation.collect_posterior: told of each refinement step

    def neg_elbo(self, batch: Batch, q: DiagonalGaussian) -> tuple[torch.Tensor, torch.Tensor]:
        """(-log p(x|z) at one z ~ q, KL(q || prior)) per example, each of shape (B,), in nats."""
        recon = self.base.reconstruction_nll(batch["x"], self.base.decode(q.rsample(), batch))
        return recon, q.kl_per_dim(self.base.prior(batch)).sum(-1)

    def _clipped(self, grad: torch.Tensor) -> torch.Tensor:
        if not self.clip:
            return grad
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
        return grad * (self.clip / norm).clamp(max=1.0)

    def refine(self, batch: Batch, q0: DiagonalGaussian, create_graph: bool = False) -> DiagonalGaussian:
        """q_K after K SVI steps from q0 (parameters (B, k)); differentiable w.r.t. q0 and the model's weights
        only with `create_graph` (end-to-end training), else detached."""
        # cuDNN refuses an RNN backward in eval mode (dropout off): evaluation refines with cuDNN's RNN off
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            torch.backends.cudnn.flags(
                enabled=self.training and torch.backends.cudnn.enabled,
                benchmark=torch.backends.cudnn.benchmark,
                deterministic=torch.backends.cudnn.deterministic,
                allow_tf32=torch.backends.cudnn.allow_tf32,
            ),
        ):
            if create_graph:
                mean, logvar = q0.mean, q0.logvar
            else:  # clones: tensors made under inference mode (validation) cannot enter autograd
                batch = {k: v.clone() for k, v in batch.items()}
                mean = q0.mean.detach().clone().requires_grad_()
                logvar = q0.logvar.detach().clone().requires_grad_()
            velocity_mean, velocity_logvar = torch.zeros_like(mean), torch.zeros_like(logvar)
            for _ in range(self.steps):
                recon, kl = self.neg_elbo(batch, DiagonalGaussian(mean, logvar))
                grad_mean, grad_logvar = torch.autograd.grad(
                    (recon + self.kl_weight * kl).sum(), (mean, logvar), create_graph=create_graph
                )
                velocity_mean = self.momentum * velocity_mean + self._clipped(grad_mean)
                velocity_logvar = self.momentum * velocity_logvar + self._clipped(grad_logvar)
                mean, logvar = mean - self.lr * velocity_mean, logvar - self.lr * velocity_logvar
                if self.progress is not None:
                    self.progress.update(1)
        if create_graph:
            return DiagonalGaussian(mean, logvar)
        return DiagonalGaussian(mean.detach(), logvar.detach())

    def encode(self, batch: Batch) -> DiagonalGaussian:
        q0 = self.base.encode(batch)
        if self.training or not self.refine_in_eval or self.steps == 0:
            return q0
        return self.refine(batch, q0)

    def prior(self, batch: Batch) -> DiagonalGaussian | None:
        return self.base.prior(batch)

    def decode(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.base.decode(z, batch)

    def reconstruction_nll(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        return self.base.reconstruction_nll(x, decoded)

    def reconstruction(self, decoded: torch.Tensor) -> torch.Tensor:
        return self.base.reconstruction(decoded)

    def token_count(self, batch: Batch) -> torch.Tensor | None:
        return self.base.token_count(batch)

    def scalars(self) -> dict[str, float]:
        return self.base.scalars()

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        q0 = self.base.encode(batch)
        recon0, kl0 = self.neg_elbo(batch, q0)
        encoder_objective = (recon0 + self.kl_weight * kl0).mean()
        end_to_end = self.end_to_end and self.training
        q = self.refine(batch, q0, create_graph=end_to_end)
        recon, kl = (term.mean() for term in self.neg_elbo(batch, q))
        loss = recon + kl
        if self.training and not end_to_end and q0.mean.requires_grad:
            # the encoder's own ELBO, through (mean, logvar) only: the decoder gets no gradient from it
            grad_mean, grad_logvar = torch.autograd.grad(encoder_objective, (q0.mean, q0.logvar))
            surrogate = (q0.mean * grad_mean).sum() + (q0.logvar * grad_logvar).sum()
            loss = loss + (surrogate - surrogate.detach())
        return {"loss": loss, "recon_nll": recon, "kl": kl, "encoder_loss": (recon0 + kl0).mean().detach()}
