"""The CVAE (design choices, image/sequence networks, bad input), the per-group active-dims metrics (oracle
cases) and a short CVAE run that reaches AD = r - t."""

from __future__ import annotations

import pytest
import torch

from conftest import read_metrics
from vaelab import metrics
from vaelab.data.conditional_manifold import ARMASequenceData, UnionManifoldData
from vaelab.data.spec import DataSpec
from vaelab.errors import ConfigError
from vaelab.evaluation import diagnose
from vaelab.models.cvae import ConditionalVAE
from vaelab.train import train

VECTOR = DataSpec(
    "conditional_manifold", (10,), condition_dim=3, ground_truth={"manifold_dim": 4, "expected_active_dims": 1}
)
IMAGES = DataSpec("mnist", (1, 28, 28), condition_dim=10, n_classes=10)
# r = 4, t = 2 in R^10: AD = 2 in ~150 epochs of 12 steps
EASY_CVAE = [
    "data=conditional_manifold",
    "model=cvae",
    "data.manifold_dim=4",
    "data.condition_rank=2",
    "data.ambient_dim=10",
    "data.n_samples=4000",
    "data.batch_size=256",
    "optimizer.lr=0.01",
    "trainer.max_epochs=150",
    "torch_threads=1",
    "callbacks.progress_bar=null",
]


def batch(spec: DataSpec, n: int = 6) -> dict[str, torch.Tensor]:
    return {"x": torch.rand(n, *spec.x_shape), "c": torch.randn(n, spec.condition_dim)}


# --------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------


def test_standard_prior_cvae_uses_the_condition_everywhere():
    torch.manual_seed(0)
    model = ConditionalVAE(VECTOR, latent_dim=5)
    b = batch(VECTOR)
    other = {**b, "c": b["c"] + 1}
    assert model.prior(b) is None  # N(0, I)
    assert not torch.allclose(model.encode(b).mean, model.encode(other).mean)
    z = torch.randn(6, 5)
    assert not torch.allclose(model.decode(z, b), model.decode(z, other))
    terms = model.loss(b)
    assert set(terms) == {"loss", "recon_nll", "kl"} and torch.isfinite(terms["loss"])


def test_learned_prior_kl_is_to_the_conditional_prior():
    torch.manual_seed(0)
    model = ConditionalVAE(VECTOR, latent_dim=5, prior="learned")
    b = batch(VECTOR)
    p, q = model.prior(b), model.encode(b)
    assert p.mean.shape == (6, 5) and not torch.allclose(p.mean, torch.zeros_like(p.mean))
    torch.manual_seed(1)
    kl = model.loss(b)["kl"]
    torch.testing.assert_close(kl, q.kl_per_dim(p).sum(-1).mean())


def test_shared_prior_is_the_encoder_on_the_condition_alone():
    torch.manual_seed(0)
    model = ConditionalVAE(VECTOR, latent_dim=5, prior="learned", share_encoder_prior=True)
    b = batch(VECTOR)
    p = model.prior(b)
    q0 = model.encode({**b, "x": torch.zeros_like(b["x"])})
    torch.testing.assert_close(p.mean, q0.mean)
    torch.testing.assert_close(p.logvar, q0.logvar)
    assert model.prior_net is None  # no separate prior network


def test_prior_in_decoder_keeps_the_standard_prior_and_shifts_z_by_mu_c():
    torch.manual_seed(0)
    model = ConditionalVAE(VECTOR, latent_dim=5, prior_in_decoder=True)
    b = batch(VECTOR)
    assert model.prior(b) is None
    mean, logvar = model.prior_net(b["c"]).chunk(2, dim=-1)
    z = torch.randn(6, 5)
    features = model.decoder_condition(b["c"])
    expected = model.decoder(torch.cat([mean + (0.5 * logvar).exp() * z, features], 1))
    torch.testing.assert_close(model.decode(z, b), expected)


def test_gated_decoder_gates_are_in_unit_interval_and_a_closed_gate_removes_the_dim():
    torch.manual_seed(0)
    model = ConditionalVAE(VECTOR, latent_dim=5, gated_decoder=True)
    b = batch(VECTOR)
    gates = model.gates(b)
    assert gates.shape == (6, 5) and ((gates > 0) & (gates < 1)).all()
    with torch.no_grad():  # close the gate of dim 0: the decoder must ignore z_0
        last = model.decoder_condition[1][-1]
        last.bias[model.decoder_cond_features] = -1e4
    z = torch.randn(6, 5)
    moved = z.clone()
    moved[:, 0] += 10
    torch.testing.assert_close(model.decode(z, b), model.decode(moved, b))
    with pytest.raises(ValueError, match="gated_decoder"):
        ConditionalVAE(VECTOR, latent_dim=5).gates(b)


def test_unconditional_variant_ignores_c_and_runs_without_it():
    model = ConditionalVAE(DataSpec("synthetic_manifold", (10,)), latent_dim=4, use_condition=False)
    b = {"x": torch.rand(3, 10)}
    assert torch.isfinite(model.loss(b)["loss"])


def test_conv_cvae_on_images_has_a_sigmoid_mean_of_image_shape():
    torch.manual_seed(0)
    model = ConditionalVAE(
        IMAGES, latent_dim=8, architecture="conv", encoder_hidden=[], channels=4, output_sigmoid=True
    )
    b = {"x": torch.rand(3, 1, 28, 28), "c": torch.eye(10)[:3]}
    x_hat = model.decode(model.encode(b).mean, b)
    assert x_hat.shape == (3, 1, 28, 28) and ((x_hat > 0) & (x_hat < 1)).all()
    assert torch.isfinite(model.loss(b)["loss"])
    assert model.scalars()["gamma"] == pytest.approx(1.0)  # log_gamma_init 0, learnable as in GaussianVAE


def test_lstm_cvae_reads_the_frames_and_shares_the_prior_with_the_encoder():
    data = ARMASequenceData(n_series=3, ambient_dim=6, window=4, n_samples=100)
    torch.manual_seed(0)
    model = ConditionalVAE(data.spec, latent_dim=4, architecture="lstm", prior="learned", share_encoder_prior=True)
    b = {k: v[:5] for k, v in data.build()["train"].items()}
    frames = torch.cat([b["c"], b["x"].unsqueeze(1)], 1)
    mean = model.encoder_head(model.encoder_features(frames)).chunk(2, -1)[0]
    torch.testing.assert_close(model.encode(b).mean, mean)
    prior_mean = model.encoder_head(model.encoder_features(b["c"])).chunk(2, -1)[0]
    torch.testing.assert_close(model.prior(b).mean, prior_mean)  # the encoder on the past frames alone
    assert torch.isfinite(model.loss(b)["loss"])


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        (
            DataSpec("synthetic_manifold", (20,)),
            {},
            "model=cvae needs a condition c but data=synthetic_manifold has none",
        ),
        (
            DataSpec("synthetic_manifold", (20,)),
            {"architecture": "conv", "use_condition": False},
            r"model.architecture=conv is an image model .* shape \(20,\)",
        ),
        (VECTOR, {"architecture": "conv"}, "model.architecture=conv is an image model"),
        (IMAGES, {"architecture": "lstm"}, "model.architecture=lstm reads sequences"),
        (VECTOR, {"use_condition": False, "gated_decoder": True}, "model.gated_decoder.*use_condition=false"),
        (VECTOR, {"share_encoder_prior": True}, "share_encoder_prior=true .* model.prior=learned"),
        (VECTOR, {"prior": "learned", "prior_in_decoder": True}, "prior_in_decoder=true .* model.prior=standard"),
        (VECTOR, {"prior": "vamp"}, "model.prior='vamp'"),
        (VECTOR, {"latent_dim": 0}, "model.latent_dim=0"),
        (
            DataSpec("conditional_manifold", (10,), condition_dim=3, ground_truth={"expected_active_dims": 6}),
            {"latent_dim": 5},
            "model.latent_dim=5 is below the 6 active dims",
        ),
    ],
)
def test_bad_model_data_combinations_name_the_key(spec, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ConditionalVAE(spec, **kwargs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=synthetic_manifold", "model=cvae"], "model=cvae needs a condition c"),
        (
            ["data=conditional_manifold", "model=cvae", "data.manifold_dim=3", "data.condition_rank=5"],
            "data.condition_rank=5 must be in 1..data.manifold_dim=3",
        ),
        (["data=conditional_manifold", "model=cvae_conv"], "model.architecture=conv is an image model"),
    ],
)
def test_bad_config_fails_before_training_and_is_recorded(make_cfg, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(make_cfg(*overrides, "callbacks.progress_bar=null"))
    assert read_metrics(tmp_path / "run")["status"] == "failed"
    assert not (tmp_path / "run" / "checkpoints").exists()


# --------------------------------------------------------------------------------------------------------------
# Per-group active dims (oracle cases)
# --------------------------------------------------------------------------------------------------------------


def test_group_active_dims_are_computed_within_each_group_not_pooled():
    # group 0 uses dims {0}, group 1 uses dims {0, 1, 2}: pooled means would give 1.0/0.5/0.5 -> AD 0 at 0.1
    var = torch.tensor([[0.01, 1.0, 1.0]] * 4 + [[0.01, 0.02, 0.03]] * 4)
    groups = torch.tensor([0] * 4 + [1] * 4)
    per_group = metrics.group_mean_encoder_variance(var, groups, 3)
    torch.testing.assert_close(per_group[:2], torch.tensor([[0.01, 1.0, 1.0], [0.01, 0.02, 0.03]]))
    assert torch.isnan(per_group[2]).all()  # group 2 has no samples
    assert metrics.group_active_dims(per_group, 0.1) == [1, 3, None]


def test_group_active_dims_with_a_learned_prior_use_the_variance_ratio():
    var = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    prior_var = torch.tensor([[10.0, 0.5], [0.5, 10.0]])  # ratio 0.05 / 1 and 1 / 0.05
    per_group = metrics.group_mean_encoder_variance(var, torch.tensor([0, 1]), 2, prior_var)
    assert metrics.group_active_dims(per_group, 0.1) == [1, 1]
    torch.testing.assert_close(per_group, torch.tensor([[0.05, 1.0], [1.0, 0.05]]))


def test_group_recon_mse_and_gate_counts():
    x = torch.zeros(4, 2)
    x_hat = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    assert metrics.group_recon_mse(x, x_hat, torch.tensor([0, 0, 1, 1]), 3) == [1.0, 1.0, None]
    assert metrics.active_dims_by_gate(torch.tensor([0.05, 0.1, 0.11, 0.9])) == 2
    with pytest.raises(ConfigError):
        metrics.active_dims_by_gate(torch.tensor([0.5]), threshold=0)


def test_active_dims_map_rows_grouped_by_class():
    var = torch.tensor([[1.0, 0.01], [0.01, 1.0], [1.0, 0.01], [0.01, 0.01]])
    groups = torch.tensor([1, 0, 1, 0])
    cells, row_groups = metrics.active_dims_map(var, groups, 0.1, per_group=5)
    assert row_groups == [0, 0, 1, 1]
    torch.testing.assert_close(cells, torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]]))
    assert metrics.active_dims_map(var, groups, 0.1, per_group=1)[1] == [0, 1]


def test_diagnose_reports_per_group_and_gate_results():
    data = UnionManifoldData(class_manifold_dims=(1, 2), ambient_dim=6, n_per_class=50)
    split = data.build()["test"]
    model = ConditionalVAE(data.spec, latent_dim=3, gated_decoder=True)
    results = diagnose(model, split, batch_size=64)
    assert results["group_sizes"] == torch.bincount(split["y"], minlength=2).tolist()
    assert len(results["group_active_dims"]) == 2 == len(results["group_recon_mse"])
    assert results["group_0_active_dims"] == results["group_active_dims"][0]
    assert len(results["per_dim_mean_gate"]) == 3 and 0 <= results["active_dims_by_gate"] <= 3
    assert set(results) >= {"group_0_active_dims_by_gate", "group_1_recon_mse"}


# --------------------------------------------------------------------------------------------------------------
# Training through the config
# --------------------------------------------------------------------------------------------------------------


def test_cvae_learns_r_minus_t_active_dims(make_cfg):
    result = train(make_cfg(*EASY_CVAE))
    assert result["status"] == "completed"
    assert result["true_expected_active_dims"] == 2
    assert result["active_dims"] == 2  # r - t, not r = 4
    assert result["gamma"] < 1e-2


def test_union_run_writes_per_class_table_and_active_dims_image(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(
        make_cfg(
            "experiment=manifold_t5_union",
            "data.n_per_class=200",
            "data.batch_size=128",
            "trainer.max_epochs=4",
            "trainer.check_val_every_n_epoch=2",
            "callbacks.diagnostics.every_n_epochs=2",
            "callbacks.progress_bar=null",
        )
    )
    assert result["true_expected_active_dims_per_group"] == [1, 2, 3, 4, 5]
    assert len(result["group_active_dims"]) == 5 and "group_4_recon_mse" in result
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert {"val/active_dims_map", "test/active_dims_map"} <= set(acc.Tags()["images"])
    assert "val/group_active_dims/g4" in acc.Tags()["scalars"]
