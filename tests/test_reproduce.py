"""vaelab.reproduce: table rows from runs on disk (exact numbers), pass/fail checks, and one real tiny multirun."""
import json
import os
from pathlib import Path

import pytest

from conftest import SHORT
from vaelab import reproduce
from vaelab.reproduce import Setting, all_equal, mean_at_least


def write_run(directory: Path, status: str, **metrics):
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(json.dumps({"status": status, "overrides": [], **metrics}))


def test_table_rows_from_runs_on_disk(tmp_path):
    good = Setting("r=2", ["data.manifold_dim=2"], expected="2", check=all_equal("active_dims", 2))
    bad = Setting("r=4", ["data.manifold_dim=4"], expected="4", check=all_equal("active_dims", 4))
    for seed, ad in enumerate([2, 2, 2]):
        write_run(reproduce.sweep_dir(tmp_path, good) / f"{seed}_seed={seed}", "completed", active_dims=ad,
                  gamma=1e-4 * (seed + 1), wall_time_s=10.0 + seed)
    write_run(reproduce.sweep_dir(tmp_path, bad) / "0_seed=0", "completed", active_dims=4, wall_time_s=5.0)
    write_run(reproduce.sweep_dir(tmp_path, bad) / "1_seed=1", "completed", active_dims=3, wall_time_s=7.0)
    write_run(reproduce.sweep_dir(tmp_path, bad) / "2_seed=2", "failed", error="boom")
    rows = reproduce.table_rows([good, bad], tmp_path, ["active_dims", "gamma"])
    assert rows[0] == ["r=2", "2", "2 ± 0", "0.0002 ± 0.0001", "3/3", "11", "pass"]
    assert rows[1] == ["r=4", "4", "3.5 ± 0.71", "-", "2/3", "6", "FAIL"]
    table = reproduce.markdown_table(["setting", "expected", "active_dims", "gamma", "jobs", "s/run", "result"], rows)
    assert table.splitlines()[1] == "|---|---|---|---|---|---|---|"
    piped = reproduce.markdown_table(["setting", "result"], [["t=5 c=|Au|^0.5", "pass"]]).splitlines()[2]
    assert piped == r"| t=5 c=\|Au\|^0.5 | pass |"  # a pipe inside a cell does not split it


def test_ivae_table_compares_the_baselines_with_the_ivae_on_shared_seeds(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "scripts"))
    import reproduce_ivae as script
    ivae, vae, beta, vae_5d = (script.BY_LABEL[label] for label in ("iVAE 2-D", "VAE 2-D", "beta-VAE 2-D", "VAE 5-D"))
    for setting, mccs in ((ivae, [0.95, 0.96, 0.99]), (vae, [0.80, 0.81]), (beta, [0.70, 0.90])):
        for seed, mcc in enumerate(mccs):
            write_run(reproduce.sweep_dir(tmp_path, setting) / f"{seed}_seed={seed}", "completed", seed=seed,
                      mcc=mcc, elbo=-3.0, wall_time_s=60.0 + seed)
    older = reproduce.sweep_dir(tmp_path, vae) / "0_other_name,seed=0"  # an older run of seed 0: not counted
    write_run(older, "completed", seed=0, mcc=0.5, elbo=-9.0, wall_time_s=1.0)
    os.utime(older / "metrics.json", (0, 0))
    write_run(reproduce.sweep_dir(tmp_path, vae_5d) / "0_seed=7", "completed", seed=7, mcc=0.7, elbo=-9.0)
    markdown, failed = script.table([ivae, vae, beta, vae_5d], tmp_path)
    rows = [line.split(" | ") for line in markdown.splitlines()[2:]]
    assert rows[0][2:4] == ["0.9667 ± 0.021", "0.950, 0.960, 0.990"] and rows[0][-1] == "pass |"
    # seeds 0 and 1 only (the iVAE's seed 2 has no partner): 0.955 - 0.805 = 0.15 (0.1499999... in floats)
    assert rows[1][2:7] == ["0.805 ± 0.0071", "0.800, 0.810", "-3 ± 0", "0.150 (2 seeds)", "2/3"]
    assert rows[1][-1] == "pass |"
    assert rows[2][5] == "0.155 (2 seeds)" and rows[2][-1] == "pass |"
    assert rows[3][5] == "no iVAE 5-D runs on these seeds" and rows[3][-1] == "- |"
    assert not failed
    write_run(reproduce.sweep_dir(tmp_path, beta) / "2_seed=2", "completed", seed=2, mcc=0.95, elbo=-3.0)
    markdown, failed = script.table([ivae, beta], tmp_path)
    assert markdown.splitlines()[3].split(" | ")[5] == "0.117 (3 seeds)" and failed


def test_manifold_table_compares_the_cvae_with_the_vae_row_read_from_disk(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "scripts"))
    import reproduce_manifold as script
    _, rows = script.settings_and_rows([0])
    vae, cvae = (next(r for r in rows if r.label == label) for label in ("T2 VAE mnist", "T4 CVAE mnist"))
    for row, ads in ((vae, [30, 31]), (cvae, [29, 31])):
        for seed, ad in enumerate(ads):
            write_run(reproduce.sweep_dir(tmp_path, row.setting) / f"{seed}_seed={seed}", "completed", seed=seed,
                      active_dims=ad, gamma=5e-3, recon_mse=5e-3)
    markdown, failed = script.table([vae, cvae], tmp_path)
    verdicts = [line.rsplit(" | ", 1)[-1] for line in markdown.splitlines()[2:]]
    assert verdicts == ["- |", "pass |"] and not failed  # the VAE row has no expected AD: no verdict
    markdown, _ = script.table([cvae], tmp_path, rows)  # the VAE row not shown: still read from disk
    assert markdown.splitlines()[2].endswith("| pass |")
    write_run(reproduce.sweep_dir(tmp_path, cvae.setting) / "2_seed=2", "completed", seed=2, active_dims=40)
    assert script.table([cvae], tmp_path, rows)[1]  # 33.3 is not below 30.5


def test_checks():
    assert mean_at_least("mcc", 0.9)([{"mcc": 0.95}, {"mcc": 0.86}])
    assert not mean_at_least("mcc", 0.9)([{"mcc": 0.95}, {"mcc": 0.8}])
    assert not all_equal("active_dims", 2)([])


def test_command_is_a_seeded_resumable_multirun(tmp_path):
    setting = Setting("x", ["experiment=vae_fixed_gamma"], full=["data.n_samples=100000"])
    cmd = reproduce.command(setting, [0, 1, 2], tmp_path, n_jobs=2, full=True, extra=["trainer=gpu"])
    assert cmd[1:4] == ["-m", "vaelab.train", "-m"]
    assert {"experiment=vae_fixed_gamma", "data.n_samples=100000", "trainer=gpu", "seed=0,1,2", "skip_completed=true",
            f"hydra.sweep.dir={tmp_path}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"} <= set(cmd)


def test_main_runs_a_real_tiny_grid_and_writes_the_table(tmp_path, capsys):
    setting = Setting("easy r=2", [*SHORT, "logger=none"], expected="2", check=all_equal("active_dims", 2))
    code = reproduce.main([setting], "Tiny", ["active_dims"], ["--seeds", "1", "--out", str(tmp_path)])
    text = (tmp_path / "table.md").read_text()
    assert "| easy r=2 | 2 |" in text and "1/1" in text and "Machine:" in text
    assert code == (0 if "| pass |" in text else 1)
    # running it again skips the completed job (skip_completed) and rebuilds the same table
    assert reproduce.main([setting], "Tiny", ["active_dims"], ["--seeds", "1", "--out", str(tmp_path)]) == code
    assert len(list(tmp_path.rglob("metrics.json"))) == 1


def test_unknown_only_is_an_error(tmp_path):
    with pytest.raises(SystemExit):
        reproduce.main([Setting("a", [])], "T", ["x"], ["--only", "zzz", "--out", str(tmp_path)])
