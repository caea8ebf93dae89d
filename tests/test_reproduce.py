"""vaelab-reproduce: the command line, the shared run machinery, and each study's table built from a folder of
tiny fake run files (metrics.json as vaelab.run_record writes them); one real tiny multirun."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.config import compose_config
from vaelab.reproduce import Runs, Setting, command, ivae, manifold, skip, stacked_seeds, sweep_dir
from vaelab.reproduce.cli import choose, main, with_seeds
from vaelab.reproduce.document import MARKER, write_page
from vaelab.reproduce.rules import exact, mean_at_least
from vaelab.reproduce.table import markdown_table


def write_run(out: Path, setting: Setting, seed: int, status: str = "completed", job: str = "", **fields) -> Path:
    """One job folder (default ``<seed>_seed=<seed>``) of the setting's sweep with its metrics.json."""
    directory = sweep_dir(out, setting) / (job or f"{seed}_seed={seed}")
    directory.mkdir(parents=True)
    record = {"status": status, "seed": seed, "overrides": [*setting.overrides, f"seed={seed}"], **fields}
    (directory / "metrics.json").write_text(json.dumps(record, indent=2))
    return directory


def rows_of(markdown: str) -> dict[str, list[str]]:
    """{first cell: cells} of a Markdown table's body."""
    lines = [line.strip("| ").split(" | ") for line in markdown.splitlines()[2:]]
    return {cells[0]: cells for cells in lines}


def by_label(settings: list[Setting]) -> dict[str, Setting]:
    return {s.label: s for s in settings}


def test_help_lists_the_studies_and_an_unknown_study_is_one_line_exit_2(capsys):
    assert main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert all(name in usage for name in ("manifold", "ivae", "skip", "generalization"))
    assert main(["nosuchstudy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown study 'nosuchstudy'" in err
    with pytest.raises(SystemExit) as stop:
        main(["ivae", "--only", "zzz", "--table-only"])
    assert stop.value.code == 2


def test_console_script_is_installed():
    proc = subprocess.run(["vaelab-reproduce", "nosuchstudy"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    proc = subprocess.run(["vaelab-reproduce", "skip", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and all(o in proc.stdout for o in ("--full", "--smoke", "--half", "--doc", "--plan"))


def test_command_is_a_seeded_resumable_multirun(tmp_path):
    setting = Setting("x", ["experiment=vae_fixed_gamma"], seeds=[0, 1, 2])
    cmd = command(setting, tmp_path, n_jobs=2, extra=["trainer=gpu"])
    assert cmd[1:4] == ["-m", "vaelab.train", "-m"]
    assert {
        "experiment=vae_fixed_gamma",
        "trainer=gpu",
        "seed=0,1,2",
        "skip_completed=true",
        f"hydra.sweep.dir={tmp_path / 'x'}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    } <= set(cmd)


def test_seeds_of_a_stackable_setting_train_as_one_stacked_job(tmp_path):
    """The seeds without a completed run train in one job (seeds=[...]) when the model stacks; one job per seed
    when it does not, when fewer than two seeds are missing, or with stacking switched off."""
    vae = Setting("vae", ["data.manifold_dim=3"], seeds=[0, 1, 2])
    sa = Setting("sa", ["inference=sa"], seeds=[0, 1, 2])
    write_run(tmp_path, vae, 1, active_dims=3)
    runs = Runs(tmp_path, [vae, sa])
    assert stacked_seeds(vae, runs) == [0, 2] and stacked_seeds(sa, runs) == []
    write_run(tmp_path, vae, 0, active_dims=3)
    assert stacked_seeds(vae, Runs(tmp_path, [vae])) == []  # one seed left: a job of its own
    assert stacked_seeds(vae, None) == [0, 1, 2]  # the command from scratch (what the page records)
    cmd = command(vae, tmp_path, n_jobs=2, stacked=[0, 2])
    assert "seeds=[0,2]" in cmd and not any(c.startswith(("seed=", "hydra/launcher")) for c in cmd)


def test_seeds_and_choice_of_settings():
    rows = ivae.settings(False)
    assert with_seeds(rows[0], 3).seeds == [0, 1, 2] and with_seeds(rows[0], [7, 9]).seeds == [7, 9]
    chosen = [s.label for s in choose(rows, "all", "VAE 2-D")]
    assert chosen == ["iVAE 2-D", "VAE 2-D", "beta-VAE 2-D"]  # the baselines bring their reference
    assert [s.label for s in choose(rows, "5-D", None)] == ["iVAE 5-D", "VAE 5-D", "beta-VAE 5-D"]


def test_markdown_table_escapes_pipes():
    table = markdown_table(["setting", "result"], [["t=5 c=|Au|^0.5", "pass"]])
    assert table.splitlines()[1] == "|---|---|" and table.splitlines()[2] == r"| t=5 c=\|Au\|^0.5 | pass |"


def test_rules_on_fake_runs(tmp_path):
    setting = Setting("r=2", [], seeds=[0, 1, 2])
    for seed, ad in enumerate([2, 2, 3]):
        write_run(tmp_path, setting, seed, active_dims=ad, mcc=0.9 + 0.01 * seed)
    runs = Runs(tmp_path, [setting])
    verdict, why = exact({"active_dims": 2})(setting, runs)
    assert verdict == "FAIL" and "per seed (0, 1, 2): 2, 2, 3" in why
    assert mean_at_least("mcc", 0.91)(setting, runs) == ("pass", "")
    assert mean_at_least("mcc", 0.92)(setting, runs)[0] == "FAIL"
    assert exact({"active_dims": 2})(Setting("r=2", [], seeds=[0, 1, 5]), runs)[0] == "incomplete"
    assert mean_at_least("mcc", 0.5)(Setting("r=2", [], seeds=[0, 5]), runs)[0] == "incomplete"


def test_union_and_group_dims_come_from_the_composed_config():
    union = compose_config(["experiment=manifold_t5_union"]).data
    groups = compose_config(["experiment=manifold_t6_groups"]).data
    rows = manifold.settings(False)
    t5, t6 = ([s for s in rows if s.table == table] for table in ("T5", "T6"))
    assert [int(s.expected) for s in t5] == list(union.class_manifold_dims)
    assert [int(s.expected) for s in t6] == [groups.manifold_dim - t for t in groups.group_ranks]
    assert {s.sweep for s in t5} == {"T5 discrete union"} and t5[1].params["ad_key"] == "group_1_active_dims"
    full = by_label(manifold.settings(True))
    assert full["T5 discrete union class 0 (r_i=1)"].overrides == ["experiment=manifold_t5_union_full"]
    assert full["T0 VAE r=2"].overrides == rows[0].overrides  # T0 has no experiment to swap
    assert manifold.union_rows("experiment=manifold_t5_union", "u") == [
        (f"u class {i} (r_i={r})", r) for i, r in enumerate(union.class_manifold_dims)
    ]


def test_manifold_table_from_fake_run_files(tmp_path):
    rows = manifold.settings(False)
    named = by_label(rows)
    for seed in (0, 1, 2):
        write_run(
            tmp_path,
            named["T0 VAE r=2"],
            seed,
            active_dims=2,
            gamma=1e-4,
            recon_mse=1e-4,
            converged=True,
            wall_time_s=10.0,
        )
        write_run(tmp_path, named["T2 VAE mnist"], seed, active_dims=30 + seed % 2)
        write_run(tmp_path, named["T4 CVAE mnist"], seed, active_dims=20 + seed)
        union = {f"group_{i}_active_dims": s.expected for i, s in enumerate(r for r in rows if r.table == "T5")}
        union = {k: int(v) if seed < 2 or k != "group_4_active_dims" else 4 for k, v in union.items()}
        write_run(tmp_path, named["T5 discrete union class 0 (r_i=1)"], seed, **union)
    write_run(tmp_path, named["T0 VAE r=4"], 0, active_dims=4)
    write_run(tmp_path, named["T0 VAE r=4"], 1, "diverged", error="NaN loss")
    doc = tmp_path / "docs" / "manifold.md"
    assert main(["manifold", "--table-only", "--out", str(tmp_path), "--doc", str(doc)]) == 1
    table = rows_of(doc.read_text().split("### Active dims per setting")[1].split("\n\n")[1])
    assert table["T0 VAE r=2"][1:] == [
        "2",
        "2 ± 0",
        "2, 2, 2",
        "0.0001 ± 0",
        "0.0001 ± 0",
        "y, y, y",
        "3/3",
        "10",
        "pass",
    ]
    assert table["T0 VAE r=4"][3:] == ["4, diverged, ·", "-", "-", "?, -, ·", "1/3", "-", "FAIL"]
    assert table["T0 VAE r=6"][-1] == "not run" and table["T2 VAE mnist"][-1] == "-"
    assert table["T4 CVAE mnist"][-1] == "pass"  # mean AD 21 below the VAE's 30.33
    assert table["T5 discrete union class 0 (r_i=1)"][-1] == "pass"
    class_4 = table["T5 discrete union class 4 (r_i=5)"]
    assert class_4[3] == "5, 5, 4" and class_4[-1] == "FAIL"
    text = doc.read_text()
    assert "- **T5**: 4 pass, 1 FAIL" in text
    assert "[T0] T0 VAE r=4: expected 4; per seed (0, 1, 2): 4, diverged, ·" in text
    assert all((doc.parent / "figures" / f"manifold_{name}.png").is_file() for name in ("ad_vs_r", "groups"))
    assert "![manifold_groups](figures/manifold_groups.png)" in text and text.rstrip().endswith(MARKER)


def test_ivae_table_compares_the_baselines_with_the_ivae_on_shared_seeds(tmp_path):
    rows = [with_seeds(s, 3) for s in ivae.settings(False)]
    named = by_label(rows)
    for label, mccs in (
        ("iVAE 2-D", [0.95, 0.96, 0.99]),
        ("VAE 2-D", [0.80, 0.81, 0.815]),
        ("beta-VAE 2-D", [0.70, 0.90, 0.92]),
    ):
        for seed, mcc in enumerate(mccs):
            write_run(tmp_path, named[label], seed, mcc=mcc, elbo=-3.0, wall_time_s=60.0 + seed)
    older = write_run(tmp_path, named["VAE 2-D"], 0, job="0_older,seed=0", mcc=0.5)  # older run of seed 0: not counted
    os.utime(older / "metrics.json", (0, 0))
    write_run(tmp_path, named["VAE 5-D"], 1, mcc=0.7, elbo=-9.0)
    runs = Runs(tmp_path, rows)
    table = rows_of(ivae.COMPARISON.markdown(ivae.COMPARISON.rows(rows, runs)))
    assert table["iVAE 2-D"][2:4] == ["0.9667 ± 0.021", "0.950, 0.960, 0.990"] and table["iVAE 2-D"][-1] == "pass"
    assert table["VAE 2-D"][2:6] == ["0.8083 ± 0.0076", "0.800, 0.810, 0.815", "-3 ± 0", "0.158 (3 seeds)"]
    assert table["VAE 2-D"][-1] == "pass" and table["beta-VAE 2-D"][-1] == "FAIL"  # gap 0.127
    assert table["VAE 5-D"][5] == "no iVAE 5-D runs on these seeds" and table["VAE 5-D"][-1] == "incomplete"
    assert table["iVAE 5-D"][-1] == "not run"
    figure = ivae.draw(rows, runs, tmp_path / "figures")
    assert [f.name for f in figure] == ["ivae_mcc.png"] and figure[0].stat().st_size > 0


def test_skip_table_pairs_each_skip_row_with_its_standard_row(tmp_path):
    rows = skip.settings(False)
    named = by_label(rows)
    for seed in (0, 1, 2):
        base = dict(iw_nll=90.0, elbo=-95.0, kl=5.0, active_units=5, probe_accuracy=0.8)
        write_run(tmp_path, named["mnist_mlp_z32_standard"], seed, **base, mi=2.0, per_dim_kl=[3.0, 2.0, 0.0])
        better = {**base, "active_units": 6, "probe_accuracy": 0.85}
        write_run(tmp_path, named["mnist_mlp_z32_skip"], seed, **better, mi=3.0, per_dim_kl=[2.0, 2.5, 1.0])
        write_run(tmp_path, named["text_ptb_standard"], seed, mi=1.0, active_units=3, iw_ppl=120.0)
        write_run(tmp_path, named["text_ptb_skip"], seed, mi=1.5 - seed, active_units=3, iw_ppl=118.0)
    doc = tmp_path / "skip.md"
    write_page(doc, "OLD-TABLES")
    doc.write_text(doc.read_text() + "\nRecorded by hand.\n")
    assert main(["skip", "--table-only", "--out", str(tmp_path), "--doc", str(doc)]) == 1
    text = doc.read_text()
    table = rows_of(text.split("### Skip-VAE")[1].split("\n\n")[1])
    assert table["mnist_mlp_z32_skip"][-1] == "pass" and table["mnist_mlp_z32_skip"][5] == "3 ± 0"
    assert table["text_ptb_skip"][-1] == "FAIL" and table["mnist_pixelcnn_skip"][-1] == "not run"
    assert "text_ptb_skip: not MI, AU above standard on seed(s) 1, 2" in text
    assert (tmp_path / "figures" / "skip_kl_mnist_mlp_z32_skip.png").is_file()
    assert "No figure for text_ptb_skip" in text  # the text runs have no per_dim_kl
    assert "OLD-TABLES" not in text and text.endswith(f"{MARKER}\n\nRecorded by hand.\n")


def test_list_and_plan_print_the_commands_without_running(tmp_path, capsys):
    assert main(["ivae", "--list", "--only", "iVAE 2-D", "--seeds", "2", "--out", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "iVAE 2-D: vaelab-train -m experiment=ivae_2d 'seeds=[0,1]'" in listed
    per_seed = [
        "ivae",
        "--list",
        "--only",
        "iVAE 2-D",
        "--seeds",
        "2",
        "--out",
        str(tmp_path),
        "--one-process-per-seed",
    ]
    assert main(per_seed) == 0
    assert "iVAE 2-D: vaelab-train -m experiment=ivae_2d seed=0,1" in capsys.readouterr().out
    assert main(["manifold", "--plan", "--only", "T0 VAE r=2"]) == 0
    assert "[T0] T0 VAE r=2:" in capsys.readouterr().out and not any(tmp_path.iterdir())


def test_a_real_tiny_smoke_run_writes_the_page(tmp_path):
    """The whole path: one real two-epoch job (generalization --smoke), its run file, the table, the page."""
    out, doc = tmp_path / "out", tmp_path / "page.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from vaelab.reproduce.cli import entry; entry()",
            "generalization",
            "--smoke",
            "--only",
            "VAE r=1 d=3",
            "--out",
            str(out),
            "--doc",
            str(doc),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert len(list(out.rglob("metrics.json"))) == 1 and "SMOKE" in doc.read_text()
    assert "| tuning | VAE r=1 d=3 kappa=3 | 1 |" in doc.read_text()


def test_the_fashion_mnist_rows_are_the_mnist_settings_on_fashion_mnist():
    named = by_label(skip.settings(False))
    for model in ("mlp_z16", "mlp_z32", "mlp_z64", "pixelcnn"):
        for row in ("standard", "skip"):
            mnist, fashion = named[f"mnist_{model}_{row}"], named[f"fmnist_{model}_{row}"]
            assert fashion.overrides == [*mnist.overrides[:-1], "data.dataset=fashion_mnist", mnist.overrides[-1]]
            assert (mnist.table, fashion.table) == ("MNIST", "Fashion-MNIST")
        assert named[f"fmnist_{model}_skip"].reference == f"fmnist_{model}_standard"


def test_skip_table_judges_by_the_probe_nearest_the_paper_and_ranks_without_a_saturated_mi(tmp_path):
    rows = skip.settings(False)
    named = by_label(rows)
    probes = dict(probe_accuracy_linear=0.92, probe_accuracy_knn=0.96, probe_accuracy_mlp=0.975)
    for seed in (0, 1, 2):
        base = dict(iw_nll=90.0, elbo=-95.0, kl=20.0, mi=9.17, mi_saturated=True, active_units=12)
        write_run(tmp_path, named["mnist_mlp_z32_standard"], seed, **base, **probes, **{"active_units_0.02": 11})
        skipped = {**probes, "probe_accuracy_linear": 0.91, "probe_accuracy_mlp": 0.98}  # linear lower, mlp higher
        mi = {"mi": 9.16, "mi_saturated": True}  # lower, but at the ceiling: not compared
        au = {"active_units": 15, "active_units_0.02": 13}
        write_run(tmp_path, named["mnist_mlp_z32_skip"], seed, **{**base, **skipped, **mi, **au})
        # the PixelCNN pair: MI below the ceiling and lower with skip -> FAIL, and old run files (probe_accuracy)
        old = dict(iw_nll=80.0, elbo=-85.0, kl=4.0, active_units=5, probe_accuracy=0.9)
        write_run(tmp_path, named["mnist_pixelcnn_standard"], seed, **old, mi=3.0, mi_saturated=False)
        write_run(tmp_path, named["mnist_pixelcnn_skip"], seed, **{**old, "probe_accuracy": 0.95}, mi=2.5)
    runs = Runs(tmp_path, rows)
    assert skip.paper_probe(named["mnist_mlp_z32_standard"], runs) == "probe_accuracy_mlp"  # 0.975: nearest 0.972
    table = rows_of(skip.COMPARISON.markdown(skip.COMPARISON.rows(rows, runs)))
    z32 = table["mnist_mlp_z32_skip"]
    assert z32[5] == "9.16 ± 0 (saturated)" and z32[-1] == "pass"  # judged by AU (both thresholds) and the MLP probe
    assert table["mnist_pixelcnn_skip"][5] == "2.5 ± 0" and table["mnist_pixelcnn_skip"][-1] == "FAIL"
    verdict, why = named["mnist_pixelcnn_skip"].rule(named["mnist_pixelcnn_skip"], runs)
    assert "seed 0: mi 2.5 vs 3" in why and "probe" not in why  # the old probe_accuracy read as the linear one
    probe_markdown = skip.PROBE_COMPARISON.markdown(skip.PROBE_COMPARISON.rows(rows, runs))
    probe_table = rows_of(probe_markdown.split("\n\n")[1])
    models = ("mlp_z32", "pixelcnn", "mlp_z16", "mlp_z64")
    assert sorted(probe_table) == sorted(f"{d}_{m}_skip" for d in ("mnist", "fmnist") for m in models)
    assert probe_table["mnist_mlp_z32_skip"][1:5] == [
        "mlp",
        "0.9200 → 0.9100: FAIL",
        "0.9600 → 0.9600: FAIL",
        "0.9750 → 0.9800: pass",
    ]
    assert probe_table["mnist_pixelcnn_skip"][1:5] == ["linear", "0.9000 → 0.9500: pass", "-", "-"]
    assert probe_table["mnist_mlp_z16_skip"][1:] == ["-", "-", "-", "-", "not run"]
    doc = tmp_path / "skip.md"
    main(["skip", "--table-only", "--out", str(tmp_path), "--doc", str(doc)])
    listed = doc.read_text().split("### Failures")[1].split("###")[0]
    assert listed.count("mnist_pixelcnn_skip:") == 1  # failed in both tables (metrics, probes): listed once


def test_runs_of_separate_sessions_add_up_to_one_page_through_the_archive(tmp_path):
    """Two sessions run different rows into scratch folders (then lost); the page, rebuilt from the archive each
    time, keeps both; a later failed run of a seed does not replace its archived completed one."""
    named = by_label(skip.settings(False))
    doc, first, second = tmp_path / "docs" / "skip.md", tmp_path / "first", tmp_path / "second"
    for seed in (0, 1, 2):
        common = dict(iw_nll=90.0, elbo=-95.0, kl=5.0, probe_accuracy=0.8, per_dim_kl=[3.0, 0.0])
        write_run(first, named["mnist_mlp_z32_standard"], seed, **common, mi=2.0, active_units=5)
        write_run(first, named["mnist_mlp_z32_skip"], seed, **{**common, "probe_accuracy": 0.9}, mi=3.0, active_units=6)
    assert main(["skip", "--table-only", "--only", "mlp_z32", "--out", str(first), "--doc", str(doc)]) == 0
    archived = doc.parent / "runs" / "skip" / "mnist_mlp_z32_skip" / "seed_1" / "metrics.json"
    record = json.loads(archived.read_text())
    assert record["mi"] == 3.0 and record["per_dim_kl"] == [3.0, 0.0] and "commit" in record["archived"]
    record["archived"]["commit"] = "first"  # archiving the same run again keeps the copy and its stamp
    archived.write_text(json.dumps(record))
    assert main(["skip", "--table-only", "--only", "mlp_z32", "--out", str(first), "--doc", str(doc)]) == 0
    assert json.loads(archived.read_text())["archived"]["commit"] == "first"
    for seed in (1, 2, 3):  # other seeds than the defaults (0, 1, 2): the page shows the archived ones
        write_run(second, named["text_ptb_standard"], seed, mi=1.0, active_units=3, iw_ppl=120.0)
        write_run(second, named["text_ptb_skip"], seed, mi=1.5, active_units=4, iw_ppl=118.0)
    write_run(second, named["mnist_mlp_z32_skip"], 1, "failed", error="boom")
    unreadable = write_run(second, named["text_ptb_sa"], 1) / "metrics.json"
    unreadable.write_text("{cut short")  # a job killed while writing: skipped, not archived
    shutil.rmtree(first)
    text_only = ["--only", "text_ptb_s", "--seeds", "1,2,3", "--out", str(second), "--doc", str(doc)]
    assert main(["skip", "--table-only", *text_only]) == 0
    table = rows_of(doc.read_text().split("### Skip-VAE")[1].split("\n\n")[1])
    assert table["mnist_mlp_z32_skip"][-1] == "pass" and table["mnist_mlp_z32_skip"][-3] == "3/3"
    assert table["text_ptb_skip"][-1] == "pass" and table["text_ptb_skip"][-3] == "3/3"
    assert table["mnist_pixelcnn_skip"][-1] == "not run" and json.loads(archived.read_text())["mi"] == 3.0
    assert (
        "- 1 run file(s): commit first" in doc.read_text()
        and "- 11 run file(s): commit" in doc.read_text()
        and not (doc.parent / "runs" / "skip" / "text_ptb_sa").exists()
    )


def test_a_setting_whose_seeds_all_completed_is_not_run_again(tmp_path, monkeypatch):
    """Stacked runs (seeds=[...]) leave per-seed folders that skip_completed does not match by overrides: the
    study itself skips a setting that has every seed."""
    from vaelab.reproduce import cli

    named = by_label(skip.settings(False))
    for seed in (0, 1, 2):
        write_run(tmp_path, named["text_ptb_standard"], seed, job=f"0_seeds=[0,1,2]/seed_{seed}", mi=1.0)
    write_run(tmp_path, named["text_ptb_skip"], 0, mi=1.0)
    ran = []
    monkeypatch.setattr(cli, "run_setting", lambda setting, *args: ran.append(setting.label) or 0)
    cli.main(["skip", "--only", "text_ptb_s", "--out", str(tmp_path)])
    assert ran == ["text_ptb_skip", "text_ptb_sa", "text_ptb_skip_sa"]  # not text_ptb_standard: complete
