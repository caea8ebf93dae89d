"""What a run will cost before it runs: optimizer steps per run from the composed config (``--plan``), and
the shrunk plumbing-test variant of a setting (``--smoke``)."""

from __future__ import annotations

from collections.abc import Sequence

from vaelab.reproduce import Setting

STEP_FLAG = 40_000  # the plan flags settings whose runs take more optimizer steps than this
SMOKE = [
    "trainer.max_epochs=2",
    "trainer.check_val_every_n_epoch=1",
    "callbacks.diagnostics.every_n_epochs=1",
    "logger=none",
]


def train_points(data) -> int | None:
    """Training points of a composed data config (the data modules' own split arithmetic), None if unknown."""
    split = list(data.get("split") or (0.8, 0.1, 0.1))

    def train_of(n: int) -> int:
        return n - int(n * split[1]) - int(n * split[2])

    if "n_segments" in data:
        return int(data.n_segments) * train_of(int(data.points_per_segment))
    if "class_manifold_dims" in data:
        return train_of(int(data.n_per_class) * len(data.class_manifold_dims))
    if "group_ranks" in data:
        return train_of(int(data.n_per_group) * len(data.group_ranks))
    if "n_samples" in data:
        return train_of(int(data.n_samples))
    return None


def estimated_steps(cfg) -> dict[str, int] | None:
    """Optimizer steps of one run of a composed config: ``base`` (points x 0.8 / batch x epochs, or
    trainer.max_steps) and, when the convergence callback extends the run (learnable gamma), ``min`` (with the
    extensions every extended run gets) and ``max`` (the whole budget). None when the data size is unknown."""
    points, batch = train_points(cfg.data), int(cfg.data.get("batch_size") or 0)
    if not points or not batch:
        return None
    per_epoch = points // batch if cfg.data.get("drop_last", True) else -(-points // batch)
    epochs, max_steps = int(cfg.trainer.get("max_epochs") or -1), int(cfg.trainer.get("max_steps") or -1)
    base = per_epoch * epochs if epochs > 0 else max_steps
    if max_steps > 0:
        base = min(base, max_steps)
    steps = {"base": base}
    conv = (cfg.get("callbacks") or {}).get("convergence")
    learnable = bool(cfg.model.get("learn_gamma", False) or cfg.model.get("learn_decoder_var", False))
    extend = None if conv is None else conv.get("extend", "auto")
    if conv is not None and epochs > 0 and (extend is True or (extend == "auto" and learnable)):
        extension = conv.get("extension_epochs") or max(1, epochs // 3)
        steps["min"] = per_epoch * (epochs + int(conv.get("min_extensions", 1)) * extension)
        steps["max"] = per_epoch * (conv.get("max_epochs") or 3 * epochs)
    return steps


def plan(settings: Sequence[Setting], extra: Sequence[str]) -> list[str]:
    """One line per setting: table, label, estimated steps per run; flags runs above STEP_FLAG steps and
    models whose latent_dim does not follow data.n_sources."""
    from vaelab.config import compose_config

    lines = []
    for setting in settings:
        cfg = compose_config([*setting.overrides, *extra])
        steps = estimated_steps(cfg)
        if steps is None:
            text = "steps unknown"
        else:
            text = f"{steps['base']} steps/run" + (
                f" ({steps['min']}-{steps['max']} with the convergence extensions)" if "min" in steps else ""
            )
        flags = []
        if steps and steps.get("min", steps["base"]) > STEP_FLAG:
            flags.append(f"ABOVE {STEP_FLAG} STEPS")
        latent, sources = cfg.model.get("latent_dim"), cfg.data.get("n_sources")
        if sources is not None and latent not in (None, sources):
            flags.append(f"model.latent_dim={latent} != data.n_sources={sources}")
        lines.append(f"  [{setting.table}] {setting.label}: {text}" + (f"  <-- {'; '.join(flags)}" if flags else ""))
    return lines


def merge_overrides(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """`base` with `extra` appended, dropping the base overrides of keys that `extra` sets."""
    keys = {o.split("=", 1)[0].lstrip("+~") for o in extra}
    return [o for o in base if o.split("=", 1)[0].lstrip("+~") not in keys] + list(extra)


def smoke(setting: Setting) -> Setting:
    """The setting shrunk to two epochs (a KL warm-up to one; plus its own `smoke` overrides) and its first seed:
    plumbing only."""
    from dataclasses import replace

    from vaelab.config import compose_config

    shrink = SMOKE + setting.smoke
    if compose_config(setting.overrides).get("kl_warmup"):  # it must end within the run (KLWarmup.check_fits)
        shrink = [*shrink, "kl_warmup.epochs=1", "kl_warmup.steps=null"]
    return replace(setting, overrides=merge_overrides(setting.overrides, shrink), seeds=setting.seeds[:1])
