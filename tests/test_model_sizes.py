"""Model sizes that follow the data: the iVAE family's latent_dim (null = the data's number of sources) and
prior_mean (auto = a learned prior mean iff the data's segments have means); contradicting values warn once."""

from __future__ import annotations

import logging

import pytest
import torch
from hydra.utils import instantiate

from vaelab.config import compose_config
from vaelab.data.nonlinear_ica import NonlinearICAData
from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError
from vaelab.models.ivae import IdentifiableVAE


def _ica(n_sources: int = 3, centred: bool = True) -> DataSpec:
    """The spec of small nonlinear-ICA data (the points are drawn lazily: building the spec is instant)."""
    return NonlinearICAData(
        n_segments=4, points_per_segment=20, n_sources=n_sources, data_dim=n_sources, centred=centred
    ).spec


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vaelab" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("n_sources", [2, 3, 5])
@pytest.mark.parametrize("prior, encoder_uses_u", [("conditional", True), ("standard", False)])
def test_latent_dim_null_follows_the_sources(n_sources, prior, encoder_uses_u, caplog):
    caplog.set_level(logging.WARNING, logger="vaelab")
    model = IdentifiableVAE(_ica(n_sources), latent_dim=None, prior=prior, encoder_uses_u=encoder_uses_u)
    assert model.latent_dim == n_sources and model.encoder[-1].out_features == 2 * n_sources
    assert model.decoder[0].in_features == n_sources
    assert IdentifiableVAE(_ica(n_sources), prior=prior, encoder_uses_u=encoder_uses_u).latent_dim == n_sources
    assert _warnings(caplog) == []


def test_a_contradicting_latent_dim_is_used_with_one_warning(caplog):
    caplog.set_level(logging.WARNING, logger="vaelab")
    model = IdentifiableVAE(_ica(3), latent_dim=5)
    assert model.latent_dim == 5 and model.encoder[-1].out_features == 10
    assert model.encode({"x": torch.zeros(2, 3), "u": torch.zeros(2, 4)}).mean.shape == (2, 5)
    (message,) = _warnings(caplog)
    assert "model.latent_dim=5" in message and "data.n_sources=3" in message and "\n" not in message
    caplog.clear()
    IdentifiableVAE(_ica(3), latent_dim=3)  # agreeing: silent
    assert _warnings(caplog) == []


def test_latent_dim_null_without_sources_names_the_key_and_the_fix():
    no_sources = DataSpec(name="synthetic_manifold", x_shape=(10,))
    with pytest.raises(ConfigError, match=r"model.latent_dim=null .*data=synthetic_manifold.*set model.latent_dim"):
        IdentifiableVAE(no_sources, prior="standard", encoder_uses_u=False)
    assert IdentifiableVAE(no_sources, latent_dim=4, prior="standard", encoder_uses_u=False).latent_dim == 4


@pytest.mark.parametrize("centred, expected", [(True, False), (False, True)])
def test_prior_mean_auto_follows_the_segment_means(centred, expected, caplog):
    caplog.set_level(logging.WARNING, logger="vaelab")
    model = IdentifiableVAE(_ica(3, centred=centred))  # prior_mean="auto" by default
    assert model.prior_mean is expected
    assert model.prior_net[-1].out_features == (2 if expected else 1) * 3
    prior = model.prior({"u": torch.eye(4)})
    assert bool(prior.mean.abs().sum() > 0) is expected
    assert _warnings(caplog) == []
    # data that does not say (no segment_means key): no mean
    assert IdentifiableVAE(DataSpec("other", (3,), aux_dim=4, ground_truth={"n_sources": 3})).prior_mean is False


def test_prior_mean_false_on_segment_means_warns_once_and_only_for_the_conditional_prior(caplog):
    caplog.set_level(logging.WARNING, logger="vaelab")
    model = IdentifiableVAE(_ica(3, centred=False), prior_mean=False)
    assert model.prior_mean is False and model.prior_net[-1].out_features == 3
    (message,) = _warnings(caplog)
    assert "model.prior_mean=false" in message and "data.centred=false" in message
    caplog.clear()
    IdentifiableVAE(_ica(3, centred=False), prior_mean=True)
    IdentifiableVAE(_ica(3, centred=True), prior_mean=True)  # a learned mean on centred data: harmless, silent
    for prior_mean in (False, "auto", True):  # the N(0, I) baselines have no prior mean to learn
        vae = IdentifiableVAE(_ica(3, centred=False), prior="standard", encoder_uses_u=False, prior_mean=prior_mean)
        assert vae.prior_mean is False and vae.prior_net is None
    assert _warnings(caplog) == []


@pytest.mark.parametrize("value", ["maybe", 1, None, "true"])
def test_unknown_prior_mean_is_a_one_line_config_error(value):
    with pytest.raises(ConfigError, match=r"model.prior_mean=.* is unknown; choose one of auto, true, false") as err:
        IdentifiableVAE(_ica(3), prior_mean=value)
    assert "\n" not in str(err.value)


def _composed_model(*overrides: str):
    cfg = compose_config(list(overrides))
    data = instantiate(cfg.data)
    return cfg, instantiate(cfg.model, _partial_=True, _convert_="all")(data=data.spec)


@pytest.mark.parametrize(
    "overrides, latent_dim, prior_mean",
    [
        (["experiment=ivae", "data.n_sources=3", "data.data_dim=3"], 3, False),
        (["experiment=ivae", "data.centred=false"], 5, True),
        (["experiment=ivae_2d"], 2, False),
        (["experiment=vae_ica_2d"], 2, False),
        (["experiment=betavae_ica_2d"], 2, False),
        (["experiment=betavae_ica"], 5, False),
    ],
)
def test_composed_experiments_follow_the_data(overrides, latent_dim, prior_mean, caplog):
    caplog.set_level(logging.WARNING, logger="vaelab")
    cfg, model = _composed_model(*overrides)
    assert cfg.model.latent_dim is None and cfg.model.prior_mean == "auto"
    assert model.latent_dim == latent_dim and model.prior_mean is prior_mean
    assert _warnings(caplog) == []


def test_composed_override_that_contradicts_the_data_warns(caplog):
    caplog.set_level(logging.WARNING, logger="vaelab")
    _, model = _composed_model("experiment=ivae", "data.n_sources=3", "data.data_dim=3", "model.latent_dim=5")
    assert model.latent_dim == 5
    (message,) = _warnings(caplog)
    assert "model.latent_dim=5 but data.n_sources=3" in message
    with pytest.raises(ConfigError, match="model.prior_mean='maybe'"):
        _composed_model("experiment=ivae", "model.prior_mean=maybe")


def test_centred_default_keeps_the_same_initial_weights():
    """prior_mean=auto on centred data builds exactly the networks prior_mean=false built (same draws)."""
    spec = _ica(3)
    torch.manual_seed(0)
    auto = IdentifiableVAE(spec, latent_dim=3)
    torch.manual_seed(0)
    explicit = IdentifiableVAE(spec, latent_dim=3, prior_mean=False)
    assert auto.state_dict().keys() == explicit.state_dict().keys()
    assert all(torch.equal(v, explicit.state_dict()[k]) for k, v in auto.state_dict().items())
