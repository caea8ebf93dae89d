#!/usr/bin/env python
"""Look at a run in TensorBoard the way a researcher does: in a (headless) browser.

    python scripts/tensorboard_browser_check.py [RUN_OR_SWEEP_DIR] --out DIR [--json FILE]

Starts ``tensorboard --logdir DIR --port <free port>``, waits until it serves the run, prints what its HTTP data
endpoints serve (runs, plugins, scalar tags with their steps, image tags, hparams and metrics) and the findings
(what a researcher would find wrong: tags without a train/val/test/final/model prefix, a tag written on two step
axes and the points TensorBoard drops for it, a tag written twice at one step (validation and test under one tag),
curves on another step axis than train/, validation curves that stop before the run does, final/ scalars at step
0, curves of one or two points, long run names, HParams entries), and saves
screenshots of the Scalars, Images and HParams views (and Time Series, and the Scalars view filtered to each tag
prefix) from headless Chromium (Debian: ``apt-get install -y chromium``) into ``--out``. With no directory it
first makes a short run with ``vaelab-train`` in a temporary folder (kept with ``--keep``). Trains nothing else.
``--no-browser``: the HTTP part and the findings only.

The JSON written to ``--out/served.json`` (or ``--json``) is what tests/test_browser.py checks. Exit codes: 0 done,
1 TensorBoard did not serve the run, 2 bad arguments, 3 Chromium missing (the HTTP part still ran).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

# A run of a few seconds that still writes a training curve (several train/ points) and validation diagnostics
# (after epochs 25, 50 and the last, 60: the validation loop only after the first two).
TINY_RUN = [
    "trainer.max_epochs=60",
    "data.n_samples=500",
    "data.batch_size=100",
    "callbacks.convergence.extend=false",
    "callbacks.progress_bar=null",
]
# (file name, URL fragment): the plugin views, then the Scalars view filtered to one prefix at a time.
VIEWS = [
    ("scalars", "#scalars&_smoothingWeight=0"),
    ("images", "#images"),
    ("hparams", "#hparams"),
    ("timeseries", "#timeseries"),
]
PREFIX_VIEW = "#scalars&_smoothingWeight=0&tagFilter={}"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), *CHROMIUM_NAMES):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run(parent: Path) -> Path:
    run_dir = parent / "run"
    cmd = [shutil.which("vaelab-train") or "vaelab-train", *TINY_RUN, f"hydra.run.dir={run_dir}"]
    print("making a run:", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"tensorboard_browser_check: vaelab-train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return run_dir


class Board:
    """A ``tensorboard`` process on a free port, and its HTTP data endpoints."""

    def __init__(self, logdir: Path, port: int | None = None):
        self.logdir, self.port = logdir, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close(), after the process ends)
        exe = shutil.which("tensorboard")
        cmd = [exe] if exe else [sys.executable, "-m", "tensorboard.main"]
        self.proc = subprocess.Popen(
            [*cmd, "--logdir", str(logdir), "--port", str(self.port), "--host", "127.0.0.1", "--reload_interval", "2"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, timeout: float = 20):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict, timeout: float = 30):
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def wait(self, timeout: float = 120) -> None:
        """Until the run's scalars are served (TensorBoard loads event files in the background)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tensorboard exited with code {self.proc.returncode}:\n{self.output()}")
            try:
                if self.get("/data/runs", 5) and any(self.get("/data/plugin/scalars/tags", 5).values()):
                    time.sleep(3)  # one more reload, so a file written last (final/, test/) is in too
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"tensorboard served no scalars within {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@contextmanager
def board(logdir: Path, port: int | None = None):
    b = Board(logdir, port)
    try:
        yield b
    finally:
        b.close()


def served(b: Board) -> dict:
    """What the data endpoints serve: runs, enabled plugins, every scalar tag with its steps, image tags,
    the hparams experiment (hparam names, metric tags) and session groups (hparam values, metric values)."""
    runs = b.get("/data/runs")
    plugins = b.get("/data/plugins_listing")
    scalar_tags = b.get("/data/plugin/scalars/tags")
    scalars = {}
    for run, tags in scalar_tags.items():
        for tag in sorted(tags):
            q = urllib.parse.urlencode({"run": run, "tag": tag})
            points = b.get(f"/data/plugin/scalars/scalars?{q}")
            scalars.setdefault(run, {})[tag] = [[int(step), value] for _, step, value in points]
    images = b.get("/data/plugin/images/tags") if plugins.get("images", {}).get("enabled") else {}
    hparams: dict = {"experiment": None, "session_groups": None}
    if plugins.get("hparams", {}).get("enabled"):
        exp = b.post("/data/plugin/hparams/experiment", {"experimentName": ""})
        hparams["experiment"] = {
            "hparams": [h["name"] for h in exp.get("hparamInfos", [])],
            "differing": [h["name"] for h in exp.get("hparamInfos", []) if h.get("differs")],
            "metrics": [m["name"]["tag"] for m in exp.get("metricInfos", [])],
        }
        groups = b.post(
            "/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 1000,
            },
        )
        hparams["session_groups"] = [
            {
                "name": g["name"],
                "n_hparams": len(g.get("hparams", {})),
                "metrics": {m["name"]["tag"]: m.get("value") for m in g.get("metricValues", [])},
            }
            for g in groups.get("sessionGroups", [])
        ]
    return {
        "url": b.url,
        "logdir": str(b.logdir),
        "runs": runs,
        "plugins": sorted(k for k, v in plugins.items() if v.get("enabled")),
        "scalars": scalars,
        "images": images,
        "hparams": hparams,
    }


def report(data: dict) -> str:
    lines = [
        f"TensorBoard {data['url']} on {data['logdir']}",
        f"runs: {data['runs']}",
        f"enabled plugins: {', '.join(data['plugins'])}",
    ]
    for run, tags in data["scalars"].items():
        lines.append(f"scalars of run {run!r}: {len(tags)} tags")
        for tag, points in tags.items():
            steps = [s for s, _ in points]
            order = "" if steps == sorted(steps) else "   <- steps not increasing"
            shown = steps if len(steps) <= 8 else [*steps[:4], "...", *steps[-3:]]
            lines.append(f"  {tag:32s} {len(steps):4d} points, steps {shown}{order}")
    for run, tags in data["images"].items():
        lines.append(f"images of run {run!r}: {', '.join(sorted(tags)) or 'none'}")
    exp = data["hparams"]["experiment"]
    if exp:
        lines.append(
            f"hparams: {len(exp['hparams'])} hparams ({len(exp['differing'])} differ between runs), "
            f"metrics: {', '.join(exp['metrics']) or 'none'}"
        )
        for g in data["hparams"]["session_groups"] or []:
            lines.append(f"  session {g['name']}: {g['n_hparams']} hparam values, metrics {g['metrics']}")
    return "\n".join(lines)


def screenshot(chromium: str, url: str, png: Path, size: str, budget_ms: int, timeout: float = 120) -> dict:
    png.unlink(missing_ok=True)
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--mute-audio",
        "--no-first-run",
        f"--window-size={size}",
        f"--virtual-time-budget={budget_ms}",
        f"--screenshot={png}",
        url,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired:
        rc, err = "timeout", ""
    ok = png.exists() and png.stat().st_size > 0
    if not ok:
        print(f"  screenshot of {url} failed (exit {rc}): {err[-500:]}", file=sys.stderr)
    return {"url": url, "png": str(png), "ok": ok, "bytes": png.stat().st_size if ok else 0}


SPLITS = ("train/", "val/", "test/", "final/", "model/")


def _group(tags) -> str:
    """encoder_var/dim_000 .. dim_019 -> 'encoder_var/dim_* (20 tags)'; other tags as they are."""
    tags = sorted(tags)
    stem = os.path.commonprefix(tags).rstrip("0123456789")
    if len(tags) > 3 and stem:
        return f"{stem}* ({len(tags)} tags)"
    return ", ".join(tags)


def findings(data: dict, logdir: Path) -> list[str]:
    """What a researcher would find wrong, from the event files (TensorBoard's EventAccumulator: every point in
    the order written) compared with what TensorBoard serves."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    per_run: dict[str, list[str]] = {}
    for run, served_tags in data["scalars"].items():
        out = per_run.setdefault(run, [])
        files = sorted((logdir / run).glob("events.out.tfevents.*"))
        written: dict[str, list[tuple[int, int]]] = {}  # tag -> [(file index, step)] in the order written
        for i, f in enumerate(files):
            acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
            acc.Reload()
            for tag in acc.Tags()["scalars"]:
                written.setdefault(tag, []).extend((i, e.step) for e in acc.Scalars(tag))
        unprefixed = [t for t in written if not t.startswith(SPLITS)]
        groups: dict[str, list[str]] = {}
        for t in unprefixed:
            groups.setdefault(t.split("/", 1)[0], []).append(t)
        for tags in groups.values():
            out.append(f"no split prefix ({'/'.join(s.rstrip('/') for s in SPLITS)}): {_group(tags)}")
        collisions: dict[tuple, list[str]] = {}
        for tag, points in sorted(written.items()):
            steps = [s for _, s in points]
            served = [s for s, _ in served_tags.get(tag, [])]
            if any(b < a for a, b in itertools.pairwise(steps)):
                lost = sorted(set(steps) - set(served))
                out.append(
                    f"{tag}: steps written out of order {steps} (two step axes?); TensorBoard serves "
                    f"{served}" + (f", dropping {lost}" if lost else "")
                )
            dup = tuple(sorted({s for s in steps if steps.count(s) > 1}))
            if dup:
                files_at = {len({i for i, step in points if step == s}) for s in dup}
                collisions.setdefault((dup, max(files_at) > 1), []).append(tag)
        for (dup, two_files), tags in collisions.items():
            why = "by two event files" if two_files else "twice in one event file"
            out.append(
                f"{_group(tags)}: written {why} at step(s) {list(dup)} (validation and test, or two writers, "
                f"under one tag?); TensorBoard serves one value per step"
            )
        train_max = max((s for t, pts in written.items() if t.startswith("train/") for _, s in pts), default=None)
        if train_max:
            short = sorted(
                t
                for t, pts in written.items()
                if not t.startswith(("final/", "test/")) and max(s for _, s in pts) < 0.25 * train_max
            )
            for tags in _by_steps(short, written).values():
                steps = sorted({s for _, s in written[tags[0]]})
                out.append(
                    f"{_group(tags)}: steps {steps}, but train/ runs to step {train_max}: another "
                    f"step axis (the curve is squeezed into the start of the training axis)"
                )
            end = max(s for pts in written.values() for _, s in pts)  # the last step anything was written at
            stale = sorted(t for t in written if t.startswith("val/") and max(s for _, s in written[t]) < end)
            for tags in _by_steps(stale, written).values():
                last = max(s for _, s in written[tags[0]])
                out.append(
                    f"{_group(tags)}: last point at step {last}, but the run ends at step {end} (no validation "
                    f"at the end of training)"
                )
            if not any(t.startswith("val/") for t in written):
                out.append(f"no val/ scalars at all (training ran to step {train_max})")
            finals = sorted(t for t in written if t.startswith("final/") and max(s for _, s in written[t]) < train_max)
            if finals:
                at = sorted({s for t in finals for _, s in written[t]})
                out.append(f"{_group(finals)} at step {at}, before training (last train/ step {train_max})")
        else:
            out.append("no train/ scalars at all")
        few = sorted(t for t, pts in served_tags.items() if 0 < len(pts) <= 2 and t.startswith(("train/", "val/")))
        for tags in _by_steps(few, written).values():
            out.append(
                f"{_group(tags)}: only {len(served_tags[tags[0]])} point(s) "
                f"{[s for s, _ in served_tags[tags[0]]]} (a dot, or an empty panel with 'ignore outliers')"
            )
    merged: dict[str, list[str]] = {}
    for run, lines in per_run.items():
        for line in lines:
            merged.setdefault(line, []).append(run)
    runs = list(per_run)

    def label(run: str) -> str:  # a sweep's job folder by its job number
        head = run.split("_", 1)[0]
        return f"job {head}" if head.isdigit() else run

    def which(on: list[str]) -> str:
        if len(on) == len(runs):
            return "every run"
        return f"{len(on)} of {len(runs)} runs: " + ", ".join(sorted(map(label, on)))

    result = [line if len(runs) == 1 else f"{line} [{which(on)}]" for line, on in merged.items()]
    return result + _board_findings(data)


def _board_findings(data: dict) -> list[str]:
    """Across runs: run names, the HParams table."""
    out = []
    runs = data["runs"]
    if len(runs) > 1:
        longest = max(runs, key=len)
        common = os.path.commonprefix([r.split("_", 1)[-1] for r in runs])
        if len(longest) > 60:
            out.append(
                f"run names up to {len(longest)} characters (e.g. {longest!r}); they repeat the overrides "
                f"common to all runs ({len(common)} characters alike after the job number)"
            )
    exp = data["hparams"]["experiment"]
    if exp:
        names = exp["hparams"]
        noise = [h for h in names if h.endswith("_target_") or h.endswith("dirpath") or h.endswith("_dir")]
        # a sweep logs only the keys that differ between its jobs (vaelab.loggers); TensorBoard marks none as
        # differing then (each run brings its own experiment summary): many hparams and none marked is the noise
        if noise or (len(runs) > 1 and not exp["differing"] and len(names) > 10):
            out.append(
                f"HParams: {len(names)} hparams, {len(exp['differing'])} marked as differing between runs; "
                f"{len(noise)} are class paths or folders (e.g. {', '.join(noise[:3])}); the table opens on "
                f"{', '.join(names[:3])} ..."
            )
        in_table = {g["name"] for g in data["hparams"]["session_groups"] or []}
        missing = [r for r in runs if r not in in_table]
        if missing:
            out.append(f"HParams: no entry for {len(missing)} run(s) (interrupted or failed?): {', '.join(missing)}")
    return out


def _by_steps(tags, written) -> dict[tuple, list[str]]:
    groups: dict[tuple, list[str]] = {}
    for t in tags:
        groups.setdefault(tuple(sorted({s for _, s in written.get(t, [])})), []).append(t)
    return groups


def prefixes(data: dict) -> list[str]:
    return sorted({tag.split("/", 1)[0] for tags in data["scalars"].values() for tag in tags if "/" in tag})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("logdir", nargs="?", type=Path, help="a finished run or sweep dir (default: make a short run)")
    p.add_argument("--out", type=Path, required=True, help="folder for the screenshots and served.json")
    p.add_argument("--json", type=Path, help="where to write what is served (default: OUT/served.json)")
    p.add_argument("--port", type=int, help="default: a free port")
    p.add_argument("--window-size", default="1600,1000")
    p.add_argument("--budget-ms", type=int, default=15000, help="Chromium's --virtual-time-budget per page")
    p.add_argument("--no-prefix-views", action="store_true", help="only the plugin views, not one per tag prefix")
    p.add_argument("--keep", action="store_true", help="keep the run this script made")
    p.add_argument("--no-browser", action="store_true", help="only the HTTP endpoints and findings, no screenshots")
    args = p.parse_args(argv)
    if args.logdir is not None and not args.logdir.is_dir():
        p.error(f"{args.logdir} is not a directory")
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = None
    logdir = args.logdir
    if logdir is None:
        tmp = Path(tempfile.mkdtemp(prefix="vaelab_tb_"))
        logdir = make_run(tmp)
    try:
        with board(logdir.resolve(), args.port) as b:
            try:
                b.wait()
            except RuntimeError as err:
                print(f"tensorboard_browser_check: {err}", file=sys.stderr)
                return 1
            data = served(b)
            print(report(data), flush=True)
            data["findings"] = findings(data, logdir.resolve())
            print("findings (what a researcher would find wrong):" if data["findings"] else "findings: none")
            for line in data["findings"]:
                print(f"  - {line}")
            chromium = None if args.no_browser else find_chromium()
            data["screenshots"] = {}
            if args.no_browser:
                pass
            elif chromium is None:
                print(
                    "tensorboard_browser_check: no Chromium (apt-get install -y chromium): no screenshots",
                    file=sys.stderr,
                )
            else:
                views = list(VIEWS)
                if not args.no_prefix_views:
                    views += [
                        (f"scalars_{pre}", PREFIX_VIEW.format(urllib.parse.quote(f"^{pre}/"))) for pre in prefixes(data)
                    ]
                for name, fragment in views:
                    shot = screenshot(
                        chromium, f"{b.url}/{fragment}", args.out / f"{name}.png", args.window_size, args.budget_ms
                    )
                    data["screenshots"][name] = shot
                    print(
                        f"screenshot {name}: {shot['png']} ({shot['bytes']} bytes)"
                        if shot["ok"]
                        else f"screenshot {name}: FAILED",
                        flush=True,
                    )
            data["made_run"] = str(logdir) if tmp else None
            (args.json or args.out / "served.json").write_text(json.dumps(data, indent=1))
            return 0 if chromium or args.no_browser else 3
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            print(f"the run is kept in {logdir}")


if __name__ == "__main__":
    sys.exit(main())
