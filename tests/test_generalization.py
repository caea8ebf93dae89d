"""scripts/reproduce_generalization.py: the settings (halves, coverage, no config defaults, they compose and their
data has the expected ground truth) and the table/verdict logic on hand-written runs. No training."""
import json
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from vaelab import reproduce
from vaelab.config import compose_config
from vaelab.summarize import RunResult

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import reproduce_generalization as study  # noqa: E402

FAMILIES = {"vae", "cvae", "union", "ica"}


@pytest.fixture(scope="module")
def composed():
    """{setting label: composed config} of every setting of the study (composition only)."""
    return {s.label: compose_config(s.overrides) for case in study.CASES for s in case.settings}


def case(label: str) -> study.Case:
    return next(c for c in study.CASES if c.label == label)


def run(status="completed", converged=True, error=None, **metrics) -> RunResult:
    return RunResult("x", status, {}, {k: float(v) for k, v in metrics.items()}, error, converged)


def test_at_least_24_settings_in_two_halves_that_each_cover_every_family():
    assert len([c for c in study.CASES if not c.extra]) >= 24
    assert len({c.label for c in study.CASES}) == len(study.CASES)
    folders = {reproduce.sweep_dir(Path("o"), s) for c in study.CASES for s in c.settings}
    assert len(folders) == sum(len(c.settings) for c in study.CASES)  # no two settings share a sweep folder
    for half in study.HALVES:
        assert {c.family for c in study.CASES if c.half == half} == FAMILIES
    assert {c.half for c in study.CASES} == set(study.HALVES)
    assert not set(study.DEFAULT_SEEDS["tuning"]) & set(study.DEFAULT_SEEDS["held_out"])
    assert all(len(seeds) >= 3 for seeds in study.DEFAULT_SEEDS.values())


@pytest.mark.parametrize("half", study.HALVES)
def test_each_half_covers_the_small_and_large_extremes(half):
    mine = [c for c in study.CASES if c.half == half]
    vaes = [c.params for c in mine if c.family == "vae"]
    assert {min(p["r"] for p in vaes), max(p["r"] for p in vaes)} == {1, 8}
    assert any(p["d"] == p["r"] + 2 for p in vaes) and max(p["d"] for p in vaes) == 40
    assert any(p["kappa"] == p["r"] + 2 for p in vaes) and max(p["kappa"] for p in vaes) == 20
    cvaes = [c.params for c in mine if c.family == "cvae"]
    assert any(p["t"] == p["r"] for p in cvaes) and any(p["t"] == 1 for p in cvaes)
    assert any(p["r"] != 10 for p in cvaes) and any(p["d"] != 20 for p in cvaes)
    assert any(1 in c.params["dims"] for c in mine if c.family == "union")
    icas = [c.params for c in mine if c.family == "ica" and not c.extra]
    assert {2, 3, 5, 8} == {p["n"] for p in icas}
    assert {min(p["segments"] for p in icas), max(p["segments"] for p in icas)} == {10, 60}
    assert {min(p["points"] for p in icas), max(p["points"] for p in icas)} == {250, 2000}
    assert {p["layers"] for p in icas} == {1, 2, 3, 4}
    assert {p["activation"] for p in icas} == {"xtanh", "leaky_relu"}
    assert {p["source"] for p in icas} == {"gauss", "laplace"}
    assert {p["centred"] for p in icas} == {True, False}
    assert {c.identifiable for c in mine if c.family == "ica"} == {True, False}


def test_identifiability_rule():
    assert study.identifiability(5, 5, 6, True, "gauss", "xtanh")[0]       # n + 1 segments, centred
    assert not study.identifiability(5, 5, 5, True, "gauss", "xtanh")[0]
    assert not study.identifiability(5, 5, 10, False, "gauss", "xtanh")[0]  # uncentred: 2n + 1 = 11
    assert study.identifiability(5, 5, 11, False, "gauss", "leaky_relu")[0]
    ok, reason = study.identifiability(8, 10, 12, False, "gauss", "xtanh")
    assert not ok and "needs n_segments >= 17, has 12" in reason
    assert all(c.reason for c in study.CASES if c.family == "ica")


def test_no_setting_is_a_config_default(composed):
    base = compose_config([])
    default_vae = (base.data.manifold_dim, base.data.ambient_dim, base.model.latent_dim)
    assert default_vae == (2, 20, 20)
    ivae = compose_config(["experiment=ivae"]).data
    default_ica = (ivae.n_sources, ivae.n_segments, ivae.points_per_segment, ivae.n_layers)
    assert default_ica == (5, 40, 1000, 3)
    t1, t5 = compose_config([study.T1]).data, compose_config([study.T5]).data
    for c in study.CASES:
        data = composed[c.settings[0].label].data
        model = composed[c.settings[0].label].model
        if c.family == "vae":
            assert (data.manifold_dim, data.ambient_dim, model.latent_dim) != default_vae, c.label
        elif c.family == "cvae":
            assert (data.manifold_dim, data.ambient_dim) != (t1.manifold_dim, t1.ambient_dim), c.label
        elif c.family == "union":
            assert list(data.class_manifold_dims) != list(t5.class_manifold_dims), c.label
        else:
            assert (data.n_sources, data.n_segments, data.points_per_segment, data.n_layers) != default_ica, c.label


def test_every_setting_composes_with_the_intended_values_and_data(composed):
    for c in study.CASES:
        cfgs = [composed[s.label] for s in c.settings]
        data = cfgs[0].data
        module = instantiate(data)  # the data module's own checks (no data built yet)
        truth = module.spec.ground_truth
        if c.family == "vae":
            assert cfgs[0].model._target_.endswith("GaussianVAE")
            assert (data.manifold_dim, data.ambient_dim, cfgs[0].model.latent_dim) == tuple(c.params.values())
            assert truth["manifold_dim"] == c.expected == c.params["r"]
        elif c.family == "cvae":
            assert cfgs[0].model.prior == "standard" and data.condition_map == "linear"
            assert truth["expected_active_dims"] == c.expected == c.params["r"] - c.params["t"]
            assert data.ambient_dim == c.params["d"]
        elif c.family == "union":
            assert truth["expected_active_dims_per_group"] == c.expected == c.params["dims"]
        else:
            ivae, vae = cfgs
            assert ivae.model.prior == "conditional" and vae.model.prior == "standard"
            assert ivae.data == vae.data  # identical data for both models
            assert "model.latent_dim" not in str(c.settings) and "model.prior_mean" not in str(c.settings)
            assert truth["n_sources"] == c.params["n"] and data.data_dim == c.params["d"]
            assert data.centred == c.params["centred"] and data.source_distribution == c.params["source"]
        if c.family != "ica" or data.n_segments * data.points_per_segment <= 15_000:
            module.setup("fit")  # the small ones: the data really builds
            assert len(module.split("train")["x"]) > 0


def test_estimated_steps_and_the_flag(composed):
    ivae = composed[case("ICA n=2 d=2 ns=10 nps=2000 nl=1 xtanh gauss centred").settings[0].label]
    epochs = ivae.trainer.max_epochs
    assert study.estimated_steps(ivae)["base"] == 10 * 1600 // 64 * epochs  # points x 0.8 / batch x epochs
    vae = composed["VAE r=1 d=3 kappa=3"]
    steps = study.estimated_steps(vae)
    assert steps["base"] == 16000 // 1024 * vae.trainer.max_epochs and steps["min"] > steps["base"]
    big = study.ica("tuning", 2, 2, 60, 2000, 1, "xtanh", "gauss", True)
    lines = study.plan([big], [], smoke=False)
    assert len(lines) == 2 and all(f"ABOVE {study.STEP_FLAG} STEPS" in line for line in lines)


def test_smoke_settings_are_short_and_compose():
    for family in FAMILIES:
        c = next(c for c in study.CASES if c.family == family)
        smoke = study.smoke_setting(c, c.settings[0])
        assert "trainer.max_epochs=2" in smoke.overrides and "trainer.max_epochs=600" not in smoke.overrides
        cfg = compose_config(smoke.overrides)
        assert cfg.trainer.max_epochs == 2
    assert study.merge_overrides(["a=1", "b=2"], ["a=3"]) == ["b=2", "a=3"]


def test_manifold_verdicts_from_runs():
    vae = case("VAE r=3 d=5 kappa=6")
    exact = study.judge_manifold(vae, {10: run(active_dims=3, gamma=1e-4, wall_time_s=30)}, [10])
    assert exact.verdict == "pass" and exact.oks == [True] and exact.row[3:5] == ["3", "y"] and not exact.failure
    unconverged = study.judge_manifold(vae, {10: run(converged=False, active_dims=3)}, [10])
    assert unconverged.verdict == "FAIL" and unconverged.oks == [False] and "converged: n" in unconverged.failure
    unknown = study.judge_manifold(vae, {10: run(converged=None, active_dims=3)}, [10])
    assert unknown.verdict == "pass" and unknown.row[4] == "?" and unknown.unknown == 1
    wrong = study.judge_manifold(vae, {10: run(active_dims=3), 11: run(active_dims=2), 12: run(active_dims=3)},
                                 [10, 11, 12])
    assert wrong.verdict == "FAIL" and wrong.row[3] == "3, 2, 3"
    assert "AD per seed (10, 11, 12): 3, 2, 3" in wrong.failure
    failed = study.judge_manifold(vae, {10: run("diverged", None, "NaN loss")}, [10, 11])
    assert failed.verdict == "FAIL" and failed.row[3] == "diverged, ·"
    assert "seed 10 diverged: NaN loss" in failed.failure
    partial = study.judge_manifold(vae, {10: run(active_dims=3)}, [10, 11])
    assert partial.verdict == "incomplete" and partial.oks == [True, None]
    assert study.judge_manifold(vae, {}, [10]).verdict == "not run"
    union = case("union r_i=[1,1,3]")
    good = run(group_0_active_dims=1, group_1_active_dims=1, group_2_active_dims=3)
    bad = run(group_0_active_dims=1, group_1_active_dims=2, group_2_active_dims=3)
    judged = study.judge_manifold(union, {0: good, 1: bad}, [0, 1])
    assert judged.oks == [True, False] and judged.row[2:4] == ["1/1/3", "1/1/3, 1/2/3"] and judged.verdict == "FAIL"
    cvae = case("CVAE r=4 t=4 d=10")
    assert cvae.expected == 0 and study.judge_manifold(cvae, {0: run(active_dims=0)}, [0]).verdict == "pass"


def test_half_pass_line_is_95_percent_of_runs():
    vae = case("VAE r=1 d=3 kappa=3")
    judged = [study.Judged(vae, [], "", [True] * 19 + [False])]
    lines, failed = study.half_lines(judged)
    assert "19/20 runs exact" in lines[0] and "**pass**" in lines[0] and not failed
    lines, failed = study.half_lines([study.Judged(vae, [], "", [True] * 18 + [False] * 2)])
    assert "**FAIL**" in lines[0] and failed
    lines, failed = study.half_lines([study.Judged(vae, [], "", [True] * 19 + [None])])
    assert "**incomplete**" in lines[0] and "1 not run" in lines[0] and not failed


def test_ica_gap_rule_and_no_verdict_when_not_identifiable():
    row = case("ICA n=2 d=2 ns=10 nps=2000 nl=1 xtanh gauss centred")
    assert row.identifiable
    ivae = {s: run(mcc=m, wall_time_s=100) for s, m in zip((0, 1, 2), (0.90, 0.92, 0.91))}
    far = {s: run(mcc=m, wall_time_s=90) for s, m in zip((0, 1, 2), (0.70, 0.75, 0.72))}
    near = {s: run(mcc=m) for s, m in zip((0, 1, 2), (0.85, 0.84, 0.83))}
    passed = study.judge_ica(row, ivae, far, [0, 1, 2])
    assert passed.verdict == "pass" and passed.row[5] == "0.187" and passed.row[6] == "yyy / yyy"
    assert passed.row[7] == "100 / 90"
    close = study.judge_ica(row, ivae, near, [0, 1, 2])
    assert close.verdict == "FAIL" and "gap 0.070" in close.failure
    low = {s: run(mcc=0.84) for s in (0, 1, 2)}
    assert study.judge_ica(row, low, {s: run(mcc=0.5) for s in (0, 1, 2)}, [0, 1, 2]).verdict == "FAIL"
    unconverged = {**ivae, 2: run(converged=False, mcc=0.91)}
    judged = study.judge_ica(row, unconverged, far, [0, 1, 2])
    assert judged.verdict == "FAIL" and "iVAE seed 2 converged: false" in judged.failure
    assert study.judge_ica(row, ivae, {0: far[0]}, [0, 1, 2]).verdict == "incomplete"
    never = case("ICA n=5 d=5 ns=10 nps=1000 nl=3 leaky_relu gauss uncentred")
    assert never.identifiable is False and not never.extra
    judged = study.judge_ica(never, low, near, [0, 1, 2])
    assert judged.verdict == "-" and judged.row[2].startswith("no: ") and not judged.failure
    other = case("ICA n=8 d=10 ns=12 nps=1000 nl=2 xtanh gauss uncentred")  # tuning, like `row`
    assert other.identifiable is False and study.judge_ica(other, low, near, [0, 1, 2]).verdict == "-"
    lines, failed = study.half_lines([passed, study.judge_ica(other, low, near, [0, 1, 2])])
    assert "1/1 identifiable settings pass" in lines[0] and "1 non-identifiable" in lines[0] and not failed


def write_run(directory: Path, status: str, **fields):
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(json.dumps({"status": status, "overrides": [], **fields}))


def test_runs_by_seed_prefers_a_completed_run_over_a_failed_one(tmp_path):
    setting = case("VAE r=1 d=3 kappa=3").settings[0]
    folder = reproduce.sweep_dir(tmp_path, setting)
    write_run(folder / "a", "completed", seed=0, active_dims=1)
    write_run(folder / "b", "failed", seed=0, error="boom")
    write_run(folder / "c", "diverged", seed=1)
    runs = reproduce.runs_by_seed(tmp_path, setting)
    assert runs[0].status == "completed" and runs[1].status == "diverged" and set(runs) == {0, 1}
    assert reproduce.runs_by_seed(tmp_path / "none", setting) == {}


def test_table_only_writes_the_document_from_runs_on_disk(tmp_path, capsys):
    vae, icarow = case("VAE r=1 d=3 kappa=3"), case("ICA n=2 d=2 ns=10 nps=2000 nl=1 xtanh gauss centred")
    for seed in (0, 1, 2):
        write_run(reproduce.sweep_dir(tmp_path, vae.settings[0]) / f"{seed}_seed={seed}", "completed", seed=seed,
                  active_dims=1, gamma=1e-4, wall_time_s=20, converged=seed != 2)
        write_run(reproduce.sweep_dir(tmp_path, icarow.settings[0]) / f"{seed}_seed={seed}", "completed", seed=seed,
                  mcc=0.95, wall_time_s=200, converged=True)
        write_run(reproduce.sweep_dir(tmp_path, icarow.settings[1]) / f"{seed}_seed={seed}", "completed", seed=seed,
                  mcc=0.7, wall_time_s=190)
    doc = tmp_path / "doc.md"
    code = study.main(["--table-only", "--half", "tuning", "--only", "=2 d=", "--out", str(tmp_path),
                       "--doc", str(doc)])
    assert code == 0  # r=2 d=25 (not run) and the ICA row: the manifold half is incomplete, not failed
    code = study.main(["--table-only", "--half", "tuning", "--only", "d=3 ", "--out", str(tmp_path),
                       "--doc", str(doc)])
    text = doc.read_text()
    assert code == 1 and "| tuning | VAE r=1 d=3 kappa=3 | 1 | 1, 1, 1 | y, y, n |" in text
    assert "2/3 runs exact" in text and "VAE r=1 d=3 kappa=3: expected AD 1" in text
    assert all(key in text for key in ("Command: `python", "--table-only", "Git commit:", "Date:", "Machine:",
                                       "Pass rules"))
    code = study.main(["--table-only", "--half", "tuning", "--only", "ICA n=2 d=2", "--out", str(tmp_path)])
    markdown = (tmp_path / "table.md").read_text()
    assert code == 0 and "| 0.95 ± 0 | 0.7 ± 0 | 0.250 | yyy / ??? | 200 / 190 | pass |" in markdown
    assert "1/1 identifiable settings pass" in markdown
