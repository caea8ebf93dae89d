"""vaelab-reproduce generalization: the settings (halves, coverage, no config defaults, they compose and their
data has the expected ground truth) and the table/verdict logic on hand-written runs. No training."""

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from vaelab.config import compose_config
from vaelab.reproduce import Runs, sweep_dir
from vaelab.reproduce import generalization as study
from vaelab.reproduce.cli import main
from vaelab.reproduce.document import MARKER
from vaelab.reproduce.plan import estimated_steps, merge_overrides, plan, smoke
from vaelab.reproduce.table import Row
from vaelab.summarize import RunResult

FAMILIES = {"vae", "cvae", "union", "ica"}
SETTINGS = study.settings()
ROWS = [s for s in SETTINGS if s.row]


class FakeRuns(Runs):
    """Runs whose by_seed answers from {label: {seed: RunResult}} instead of the disk."""

    def __init__(self, given: dict):
        super().__init__(Path("unused"), SETTINGS)
        self.given = given

    def by_seed(self, setting):
        setting = self.settings[setting] if isinstance(setting, str) else setting
        return {seed: self.given.get(setting.label, {}).get(seed) for seed in setting.seeds}


def judge(row, given: dict):
    """(verdict, why) of `row` with the runs {label: {seed: run}}."""
    return row.rule(row, FakeRuns(given))


@pytest.fixture(scope="module")
def composed():
    """{setting label: composed config} of every setting of the study (composition only)."""
    return {s.label: compose_config(s.overrides) for s in SETTINGS}


def setting(label: str):
    return next(s for s in SETTINGS if s.label == label)


def run(status="completed", converged=True, error=None, **metrics) -> RunResult:
    return RunResult("x", status, {}, {k: float(v) for k, v in metrics.items()}, error, converged)


def test_at_least_24_settings_in_two_halves_that_each_cover_every_family():
    assert len(ROWS) >= 24
    assert len({s.label for s in SETTINGS}) == len(SETTINGS)
    folders = {sweep_dir(Path("o"), s) for s in SETTINGS}
    assert len(folders) == len(SETTINGS)  # no two settings share a sweep folder
    for half in study.HALVES:
        assert {s.params["family"] for s in ROWS if s.table == half} == FAMILIES
    assert {s.table for s in SETTINGS} == set(study.HALVES)
    assert not set(study.DEFAULT_SEEDS["tuning"]) & set(study.DEFAULT_SEEDS["held_out"])
    assert all(s.seeds == study.DEFAULT_SEEDS[s.table] for s in SETTINGS)
    assert all(s.reference in {r.label for r in SETTINGS if not r.row} for s in ROWS if s.params["family"] == "ica")


@pytest.mark.parametrize("half", study.HALVES)
def test_each_half_covers_the_small_and_large_extremes(half):
    mine = [s.params for s in ROWS if s.table == half]
    vaes = [p for p in mine if p["family"] == "vae"]
    assert {min(p["r"] for p in vaes), max(p["r"] for p in vaes)} == {1, 8}
    assert any(p["d"] == p["r"] + 2 for p in vaes) and max(p["d"] for p in vaes) == 40
    assert any(p["kappa"] == p["r"] + 2 for p in vaes) and max(p["kappa"] for p in vaes) == 20
    cvaes = [p for p in mine if p["family"] == "cvae"]
    assert any(p["t"] == p["r"] for p in cvaes) and any(p["t"] == 1 for p in cvaes)
    assert any(p["r"] != 10 for p in cvaes) and any(p["d"] != 20 for p in cvaes)
    assert any(1 in p["dims"] for p in mine if p["family"] == "union")
    icas = [p for p in mine if p["family"] == "ica"]
    assert {2, 3, 5, 8} == {p["n"] for p in icas}
    assert {min(p["segments"] for p in icas), max(p["segments"] for p in icas)} == {10, 60}
    assert {min(p["points"] for p in icas), max(p["points"] for p in icas)} == {250, 2000}
    assert {p["layers"] for p in icas} == {1, 2, 3, 4}
    assert {p["activation"] for p in icas} == {"xtanh", "leaky_relu"}
    assert {p["source"] for p in icas} == {"gauss", "laplace"}
    assert {p["centred"] for p in icas} == {True, False}
    assert {p["identifiable"] for p in icas} == {True, False}


def test_identifiability_rule():
    assert study.identifiability(5, 5, 6, True, "gauss", "xtanh")[0]  # n + 1 segments, centred
    assert not study.identifiability(5, 5, 5, True, "gauss", "xtanh")[0]
    assert not study.identifiability(5, 5, 10, False, "gauss", "xtanh")[0]  # uncentred: 2n + 1 = 11
    assert study.identifiability(5, 5, 11, False, "gauss", "leaky_relu")[0]
    ok, reason = study.identifiability(8, 10, 12, False, "gauss", "xtanh")
    assert not ok and "needs n_segments >= 17, has 12" in reason
    assert all(s.params["reason"] for s in SETTINGS if s.params["family"].startswith("ica"))


def test_no_setting_is_a_config_default(composed):
    base = compose_config([])
    default_vae = (base.data.manifold_dim, base.data.ambient_dim, base.model.latent_dim)
    assert default_vae == (2, 20, 20)
    ivae = compose_config(["experiment=ivae"]).data
    default_ica = (ivae.n_sources, ivae.n_segments, ivae.points_per_segment, ivae.n_layers)
    assert default_ica == (5, 40, 1000, 3)
    t1, t5 = compose_config([study.T1]).data, compose_config([study.T5]).data
    for s in SETTINGS:
        data, model, family = composed[s.label].data, composed[s.label].model, s.params["family"]
        if family == "vae":
            assert (data.manifold_dim, data.ambient_dim, model.latent_dim) != default_vae, s.label
        elif family == "cvae":
            assert (data.manifold_dim, data.ambient_dim) != (t1.manifold_dim, t1.ambient_dim), s.label
        elif family == "union":
            assert list(data.class_manifold_dims) != list(t5.class_manifold_dims), s.label
        else:
            assert (data.n_sources, data.n_segments, data.points_per_segment, data.n_layers) != default_ica, s.label


def test_every_setting_composes_with_the_intended_values_and_data(composed):
    for s in ROWS:
        cfg, p = composed[s.label], s.params
        data = cfg.data
        module = instantiate(data)  # the data module's own checks (no data built yet)
        truth = module.spec.ground_truth
        if p["family"] == "vae":
            assert cfg.model._target_.endswith("GaussianVAE")
            assert (data.manifold_dim, data.ambient_dim, cfg.model.latent_dim) == (p["r"], p["d"], p["kappa"])
            assert truth["manifold_dim"] == p["expected_ads"]["active_dims"] == p["r"]
        elif p["family"] == "cvae":
            assert cfg.model.prior == "standard" and data.condition_map == "linear"
            assert truth["expected_active_dims"] == p["expected_ads"]["active_dims"] == p["r"] - p["t"]
            assert data.ambient_dim == p["d"]
        elif p["family"] == "union":
            assert truth["expected_active_dims_per_group"] == list(p["expected_ads"].values()) == p["dims"]
        else:
            vae = composed[s.reference]
            assert cfg.model.prior == "conditional" and vae.model.prior == "standard"
            assert data == vae.data  # identical data for both models
            assert "model.latent_dim" not in str(s.overrides) and "model.prior_mean" not in str(s.overrides)
            assert truth["n_sources"] == p["n"] and data.data_dim == p["d"]
            assert data.centred == p["centred"] and data.source_distribution == p["source"]
        if p["family"] != "ica" or data.n_segments * data.points_per_segment <= 15_000:
            module.setup("fit")  # the small ones: the data really builds
            assert len(module.split("train")["x"]) > 0


def test_estimated_steps_and_the_flag(composed):
    ivae = composed["ICA n=2 d=2 ns=10 nps=2000 nl=1 xtanh gauss centred"]
    epochs = ivae.trainer.max_epochs
    assert estimated_steps(ivae)["base"] == 10 * 1600 // 64 * epochs  # points x 0.8 / batch x epochs
    vae = composed["VAE r=1 d=3 kappa=3"]
    steps = estimated_steps(vae)
    assert steps["base"] == 16000 // 1024 * vae.trainer.max_epochs and steps["min"] > steps["base"]
    big = study.ica("tuning", 2, 2, 60, 2000, 1, "xtanh", "gauss", True)
    lines = plan(big, [])
    assert len(lines) == 2 and all("ABOVE 40000 STEPS" in line for line in lines)


def test_smoke_settings_are_short_and_compose():
    for family in FAMILIES:
        shrunk = smoke(next(s for s in ROWS if s.params["family"] == family))
        assert "trainer.max_epochs=2" in shrunk.overrides and len(shrunk.seeds) == 1
        assert compose_config(shrunk.overrides).trainer.max_epochs == 2
    assert merge_overrides(["a=1", "b=2"], ["a=3"]) == ["b=2", "a=3"]


def test_smoke_shrinks_a_kl_warmup_into_the_two_epochs():
    from vaelab.reproduce import manifold

    t1 = next(s for s in manifold.settings(False) if s.label.startswith("T1 "))
    cfg = compose_config(smoke(t1).overrides)
    assert cfg.trainer.max_epochs == 2 and cfg.kl_warmup.epochs == 1


def test_manifold_verdicts_from_runs():
    vae = setting("VAE r=3 d=5 kappa=6")  # held_out: seeds 10, 11, 12
    three = {10: run(active_dims=3), 11: run(active_dims=3), 12: run(active_dims=3)}
    assert judge(vae, {vae.label: three}) == ("pass", "")
    assert judge(vae, {vae.label: {**three, 10: run(converged=False, active_dims=3)}})[0] == "FAIL"
    assert judge(vae, {vae.label: {**three, 10: run(converged=None, active_dims=3)}})[0] == "pass"
    verdict, why = judge(vae, {vae.label: {**three, 11: run(active_dims=2)}})
    assert verdict == "FAIL" and "per seed (10, 11, 12): 3, 2, 3" in why
    verdict, why = judge(vae, {vae.label: {10: run("diverged", None, "NaN loss")}})
    assert verdict == "FAIL" and "diverged, ·, ·" in why and "seed 10 diverged: NaN loss" in why
    assert judge(vae, {vae.label: {10: run(active_dims=3)}})[0] == "incomplete"
    assert judge(vae, {vae.label: {10: run("running", None)}})[0] == "not run"  # running: not finished
    assert judge(vae, {})[0] == "not run"
    union = setting("union r_i=[1,1,3]")  # tuning: seeds 0, 1, 2
    good = run(group_0_active_dims=1, group_1_active_dims=1, group_2_active_dims=3)
    bad = run(group_0_active_dims=1, group_1_active_dims=2, group_2_active_dims=3)
    verdict, why = judge(union, {union.label: {0: good, 1: bad, 2: good}})
    assert union.expected == "1/1/3" and verdict == "FAIL" and "1/1/3, 1/2/3, 1/1/3" in why
    cvae = setting("CVAE r=4 t=4 d=10")
    assert cvae.expected == "0"
    assert judge(cvae, {cvae.label: {s: run(active_dims=0) for s in (10, 11, 12)}})[0] == "pass"


def test_half_pass_line_is_95_percent_of_runs():
    tuning = [s for s in ROWS if s.table == "tuning" and study.is_manifold(s)]  # 9 settings x 3 seeds = 27 runs

    def line(wrong: int, missing: int = 0):
        given = {s.label: {seed: run(**s.params["expected_ads"]) for seed in s.seeds} for s in tuning}
        runs_of = [(s.label, seed) for s in tuning for seed in s.seeds]
        for label, seed in runs_of[:wrong]:
            given[label][seed] = run(**{k: -1 for k in setting(label).params["expected_ads"]})
        for label, seed in runs_of[len(runs_of) - missing :]:
            del given[label][seed]
        return study.half_lines(tuning, FakeRuns(given), [])

    lines, failed = line(0)
    assert "27/27 runs exact" in lines[0] and "**pass**" in lines[0] and not failed
    lines, failed = line(1)  # 26/27 = 96.3%
    assert "**pass**" in lines[0] and not failed and "1 completed manifold run(s) with the wrong AD" in lines[-1]
    lines, failed = line(2)  # 25/27 = 92.6%
    assert "**FAIL**" in lines[0] and failed
    lines, failed = line(0, missing=1)
    assert "**incomplete**" in lines[0] and "1 not run" in lines[0] and not failed


def test_ica_gap_rule_and_no_verdict_when_not_identifiable():
    row = setting("ICA n=2 d=2 ns=10 nps=2000 nl=1 xtanh gauss centred")
    assert row.params["identifiable"] and row.table == "tuning"
    ivae = {s: run(mcc=m, wall_time_s=100) for s, m in zip((0, 1, 2), (0.90, 0.92, 0.91), strict=True)}
    far = {s: run(mcc=m, wall_time_s=90) for s, m in zip((0, 1, 2), (0.70, 0.75, 0.72), strict=True)}
    near = {s: run(mcc=m) for s, m in zip((0, 1, 2), (0.85, 0.84, 0.83), strict=True)}
    assert judge(row, {row.label: ivae, row.reference: far}) == ("pass", "")
    cells = [c.cell(row, FakeRuns({row.label: ivae, row.reference: far})) for c in study.ICA.columns]
    assert cells[5:] == ["0.187", "yyy / yyy", "100 / 90"]
    verdict, why = judge(row, {row.label: ivae, row.reference: near})
    assert verdict == "FAIL" and "gap 0.070" in why
    low = {s: run(mcc=0.84) for s in (0, 1, 2)}
    assert judge(row, {row.label: low, row.reference: {s: run(mcc=0.5) for s in (0, 1, 2)}})[0] == "FAIL"
    verdict, why = judge(row, {row.label: {**ivae, 2: run(converged=False, mcc=0.91)}, row.reference: far})
    assert verdict == "FAIL" and "iVAE seed 2 converged: false" in why
    assert judge(row, {row.label: ivae, row.reference: {0: far[0]}})[0] == "incomplete"
    never = setting("ICA n=5 d=5 ns=10 nps=1000 nl=3 leaky_relu gauss uncentred")
    assert never.params["identifiable"] is False
    assert judge(never, {never.label: low, never.reference: near}) == ("-", "")
    other = setting("ICA n=8 d=10 ns=12 nps=1000 nl=2 xtanh gauss uncentred")  # tuning, like `row`
    rows = [Row(row, [], "pass", ""), Row(other, [], "-", "")]
    lines, failed = study.half_lines([row, other], FakeRuns({}), rows)
    assert "1/1 identifiable settings pass" in lines[0] and "1 non-identifiable" in lines[0] and not failed


def write_run(directory: Path, status: str, **fields):
    directory.mkdir(parents=True)
    (directory / "metrics.json").write_text(json.dumps({"status": status, "overrides": [], **fields}))


def test_runs_by_seed_prefers_a_completed_run_over_a_failed_one(tmp_path):
    vae = setting("VAE r=1 d=3 kappa=3")
    folder = sweep_dir(tmp_path, vae)
    write_run(folder / "a", "completed", seed=0, active_dims=1)
    write_run(folder / "b", "failed", seed=0, error="boom")
    write_run(folder / "c", "diverged", seed=1)
    runs = Runs(tmp_path, SETTINGS).by_seed(vae)
    assert runs[0].status == "completed" and runs[1].status == "diverged" and runs[2] is None
    assert Runs(tmp_path / "none", SETTINGS).by_seed(vae) == {0: None, 1: None, 2: None}


def test_table_only_writes_the_document_from_runs_on_disk(tmp_path):
    vae, icarow = setting("VAE r=1 d=3 kappa=3"), setting("ICA n=2 d=2 ns=10 nps=2000 nl=1 xtanh gauss centred")
    for seed in (0, 1, 2):
        write_run(
            sweep_dir(tmp_path, vae) / f"{seed}_seed={seed}",
            "completed",
            seed=seed,
            active_dims=1,
            gamma=1e-4,
            wall_time_s=20,
            converged=seed != 2,
        )
        write_run(
            sweep_dir(tmp_path, icarow) / f"{seed}_seed={seed}",
            "completed",
            seed=seed,
            mcc=0.95,
            wall_time_s=200,
            converged=True,
        )
        write_run(
            sweep_dir(tmp_path, setting(icarow.reference)) / f"{seed}_seed={seed}",
            "completed",
            seed=seed,
            mcc=0.7,
            wall_time_s=190,
        )
    doc = tmp_path / "docs" / "generalization.md"
    out = ["--table-only", "--half", "tuning", "--out", str(tmp_path), "--doc", str(doc)]
    assert main(["generalization", *out, "--only", "=2 d="]) == 0  # r=2 d=25 not run: incomplete, not failed
    doc.write_text(doc.read_text() + "\nMy analysis.\n")
    code = main(["generalization", *out, "--only", "d=3 "])
    text = doc.read_text()
    assert code == 1 and "| tuning | VAE r=1 d=3 kappa=3 | 1 | 1, 1, 1 | y, y, n |" in text
    assert "2/3 runs exact" in (tmp_path / "table.md").read_text()  # the chosen setting's page
    assert "VAE r=1 d=3 kappa=3: expected 1" in text
    # the doc is rebuilt from the archive with every setting: the ICA row archived by the first call
    assert "| tuning | ICA n=2 d=2 ns=10 nps=2000 nl=1 xtanh gauss centred |" in text and "| 0.95 ± 0 |" in text
    assert "| held_out | VAE r=1 d=40 kappa=20 | 1 | ·, ·, · |" in text
    assert all(
        key in text
        for key in (
            "Command: `vaelab-reproduce generalization --table-only",
            "Git commit:",
            "Date:",
            "Machine",
            "cores",
            "torch",
            "Pass rules",
            "vaelab-train -m",
        )
    )
    assert text.endswith(f"{MARKER}\n\nMy analysis.\n")  # the hand-written part survives regeneration
    assert (doc.parent / "figures" / "generalization_ad.png").is_file()
    assert (
        main(["generalization", "--table-only", "--half", "tuning", "--only", "ICA n=2 d=2", "--out", str(tmp_path)])
        == 0
    )
    markdown = (tmp_path / "table.md").read_text()
    assert "| 0.95 ± 0 | 0.7 ± 0 | 0.250 | yyy / ??? | 200 / 190 | pass |" in markdown
    assert "1/1 identifiable settings pass" in markdown
    assert (tmp_path / "figures" / "generalization_mcc.png").is_file()
