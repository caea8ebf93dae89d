"""Image panels in TensorBoard (reconstructions, samples, traversals) for image-shaped data."""

from __future__ import annotations

import torch

from conftest import SHORT
from vaelab.data.spec import DataSpec
from vaelab.images import image_grid, image_panels
from vaelab.models.gaussian_vae import GaussianVAE
from vaelab.train import train


def test_image_grid_places_images_row_by_row():
    images = torch.arange(1, 4, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 1, 2, 2) / 4
    grid = image_grid(images, nrow=2, pad=1)
    assert grid.shape == (1, 2 * 3 + 1, 2 * 3 + 1)
    assert grid[0, 1:3, 1:3].eq(0.25).all() and grid[0, 1:3, 4:6].eq(0.5).all()
    assert grid[0, 4:6, 1:3].eq(0.75).all() and grid[0, 4:6, 4:6].eq(1.0).all()  # empty cell stays white
    assert grid[0, 0].eq(1).all() and grid[0, :, 3].eq(1).all()  # padding


def test_image_panels_shapes_and_traversal_rows():
    torch.manual_seed(0)
    model = GaussianVAE(DataSpec("img", (1, 8, 8)), latent_dim=4)
    split = {"x": torch.rand(16, 1, 8, 8), "z_true": torch.zeros(16, 2)}
    rng = torch.get_rng_state()
    panels = image_panels(model, split, dims=[2, 0], steps=5)
    assert torch.equal(torch.get_rng_state(), rng) and model.training  # state untouched
    assert panels["reconstructions"].shape == (1, 4 * 9 + 1, 8 * 9 + 1)  # x / x_hat rows for 16 images
    assert panels["samples"].shape == (1, 2 * 9 + 1, 8 * 9 + 1)
    assert panels["traversals"].shape == (1, 2 * 9 + 1, 5 * 9 + 1)  # one row per dim, 5 steps
    row = panels["traversals"][0, 1:9]  # the first traversed dim changes the decoded image along the row
    assert not torch.allclose(row[:, 1:9], row[:, -9:-1])
    assert torch.equal(panels["reconstructions"][:, 1:9, 1:9], split["x"][0].clamp(0, 1))


def test_image_data_logs_image_panels_to_tensorboard(make_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(
        *SHORT,
        "data._target_=helpers.TinyImageData",
        "data.n_samples=256",
        "data.batch_size=32",
        "model.latent_dim=4",
        "trainer.max_epochs=2",
        "callbacks.diagnostics.every_n_epochs=1",
        "callbacks.diagnostics.evaluators.image_panels.dims=3",
    )
    result = train(cfg)
    assert result["status"] == "completed"
    acc = EventAccumulator(str(result["run_dir"] + "/tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    tags = set(acc.Tags()["images"])
    assert {"val/reconstructions", "val/samples", "val/traversals", "test/traversals"} <= tags
    traversal = acc.Images("test/traversals")[-1]
    assert (traversal.height, traversal.width) == (3 * 9 + 1, 9 * 9 + 1)  # 3 dims x 9 steps
