"""S member models of one architecture as one module whose parameters carry a leading member axis.

The stacked module is a copy of member 0 in which every ``nn.Linear`` becomes a ``MemberLinear`` (weights
(S, out, in), one batched matmul for all members), every ``nn.PReLU`` a ``MemberPReLU`` and every learnable
scalar (the decoder variance ``log_gamma`` / ``log_decoder_var``) one (S,) parameter. Activations are member-
folded: tensors of shape (S * B, ...), member s's rows at [s * B, (s + 1) * B), so the models' own
``encode`` / ``prior`` / ``decode`` / ``reconstruction_nll`` (flatten(1), cat along dim 1, per-sample terms) run
unchanged on all members at once. ``unstack`` copies member s back into an ordinary model instance.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from vaelab.errors import ConfigError
from vaelab.models.base import LatentVariableModel
from vaelab.models.bernoulli_mlp import BernoulliMLPVAE
from vaelab.models.cvae import ConditionalVAE
from vaelab.models.gaussian_vae import GaussianVAE
from vaelab.models.ivae import IdentifiableVAE

# the model keys (conf/model) whose networks are all MLPs: what can be stacked
STACKABLE = "vae, ivae, vae_ica, cvae (architecture=mlp), bernoulli_mlp"
STACKABLE_MODELS = (GaussianVAE, ConditionalVAE, IdentifiableVAE, BernoulliMLPVAE)  # their classes


class MemberLinear(nn.Module):
    """S linear layers: member-folded x (S * B, in) -> (S * B, out); weight (S, out, in), bias (S, out) or None."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.members = len(layers)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]).clone())
        self.bias = (
            nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]).clone())
            if layers[0].bias is not None
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(self.members, -1, x.shape[-1])
        weight = self.weight.transpose(1, 2)
        out = torch.bmm(x, weight) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), x, weight)
        return out.view(-1, out.shape[-1])

    def member_state(self, s: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight[s], **({"bias": self.bias[s]} if self.bias is not None else {})}


class MemberPReLU(nn.Module):
    """S PReLUs: member-folded x (S * B, n) -> same shape; weight (S, num_parameters)."""

    def __init__(self, layers: Sequence[nn.PReLU]):
        super().__init__()
        self.members = len(layers)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        folded = x.view(self.members, -1, *x.shape[1:])
        slope = self.weight.view(self.members, 1, -1, *([1] * (x.dim() - 2)))
        return torch.where(folded >= 0, folded, slope * folded).view_as(x)

    def member_state(self, s: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight[s]}


def check_stackable(model: nn.Module) -> None:
    """ConfigError (naming ``model`` and the models that can) unless every network of `model` is an MLP."""
    if hasattr(model, "base"):  # SemiAmortized wraps the model whose posterior it refines
        raise ConfigError(
            "inference=sa (per-point SVI refinement) cannot be trained seed-parallel; drop inference=sa "
            "or run the seeds one process each (a -m sweep over seed)"
        )
    if isinstance(model, ConditionalVAE) and model.architecture != "mlp":
        raise ConfigError(
            f"model.architecture={model.architecture} cannot be trained seed-parallel (its "
            f"networks are not MLPs); seed-parallel training takes model={STACKABLE}; run the "
            "seeds one process each (a -m sweep over seed)"
        )
    if not isinstance(model, STACKABLE_MODELS):
        raise ConfigError(
            f"model={type(model).__name__} cannot be trained seed-parallel; seed-parallel training "
            f"takes model={STACKABLE}; run the seeds one process each (a -m sweep over seed)"
        )
    for name, module in model.named_modules():
        if module is model:
            stateful = [n for n, p in module.named_parameters(recurse=False) if p.dim() != 0]
        elif isinstance(module, (nn.Linear, nn.PReLU)):
            continue
        else:
            stateful = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        if stateful:
            raise ConfigError(
                f"model: the module {name or 'model'} ({type(module).__name__}) cannot be stacked; "
                f"seed-parallel training takes model={STACKABLE} with MLP networks"
            )


class StackedModel(nn.Module):
    """S member models (same class and config, different weights) as one module; see the module docstring.

    ``template`` is a deep copy of member 0 with member layers swapped in; the model's own scalar parameters
    live in ``scalars`` as (S,) tensors and are bound to the template as per-row (S * B,) tensors by ``bind``
    before each member-folded forward."""

    def __init__(self, models: Sequence[LatentVariableModel]):
        super().__init__()
        for model in models:
            check_stackable(model)
        self.members = len(models)
        self.template = copy.deepcopy(models[0])
        self.scalar_names = [name for name, p in models[0].named_parameters(recurse=False)]
        self.scalars = nn.ParameterDict(
            {
                name: nn.Parameter(torch.stack([getattr(m, name).detach() for m in models]).clone())
                for name in self.scalar_names
            }
        )
        for name in self.scalar_names:
            del self.template._parameters[name]
        self.member_modules: dict[str, nn.Module] = {}
        for name, module in list(models[0].named_modules()):
            kind = (
                MemberLinear if isinstance(module, nn.Linear) else MemberPReLU if isinstance(module, nn.PReLU) else None
            )
            if kind is None:
                continue
            member = kind([m.get_submodule(name) for m in models])
            parent, _, child = name.rpartition(".")
            setattr(self.template.get_submodule(parent) if parent else self.template, child, member)
            self.member_modules[name] = member

    def bind(self, batch_size: int) -> None:
        """Binds each member's scalars to its rows of a member-folded batch of `batch_size` rows per member."""
        for name, values in self.scalars.items():
            setattr(self.template, name, values.unsqueeze(1).expand(-1, batch_size).reshape(-1))

    def unstack(self, s: int, into: LatentVariableModel) -> LatentVariableModel:
        """Copies member `s`'s parameters into `into` (a model of the stacked class and config); returns it."""
        state = {name: values[s] for name, values in self.scalars.items()}
        for name, member in self.member_modules.items():
            state.update({f"{name}.{k}": v for k, v in member.member_state(s).items()})
        buffers = {name: b for name, b in into.named_buffers()}
        missing = set(into.state_dict()) - set(state) - set(buffers)
        if missing:
            raise ValueError(f"unstack: no stacked values for {sorted(missing)}")
        with torch.no_grad():
            for name, p in into.named_parameters():
                p.copy_(state[name])
        return into


def flatten_parameters(params: Sequence[nn.Parameter]) -> nn.Parameter:
    """Moves the stacked `params` (each (S, ...)) into one (S, P) parameter and returns it: each becomes a view of
    its columns, and its gradient a view of the same columns of the flat parameter's gradient (kept allocated:
    backward accumulates into it in place, so zero it between steps instead of setting it to None). The
    optimizer, gradient norms, clipping and the freezing of stopped members then take one operation per step
    instead of one per tensor (on CPU, ``foreach`` optimizers loop over tensors)."""
    if len({(p.dtype, p.device) for p in params}) != 1:
        raise ValueError("flatten_parameters: the stacked parameters differ in dtype or device")
    members = len(params[0])
    sizes = [p[0].numel() for p in params]
    flat = nn.Parameter(torch.empty(members, sum(sizes), dtype=params[0].dtype, device=params[0].device))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    with torch.no_grad():
        for p, size in zip(params, sizes, strict=True):
            columns = slice(offset, offset + size)
            flat[:, columns].copy_(p.reshape(members, size))
            p.data = flat.data[:, columns].view(p.shape)
            p.grad = flat.grad[:, columns].view(p.shape)
            offset += size
    return flat
