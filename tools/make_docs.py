"""Regenerate every picture in docs/ and every table the README and docs/ pages quote, from the code as it is.

    python tools/make_docs.py                    # all of it: about 3 hours on 2 cores, resumable
    python tools/make_docs.py --compare False --bench False --first_hour False --ppo False   # the default runs: ~40 min
    python tools/make_docs.py --tables_only      # the constants tables, and those first_hour.py and bench --gpu wrote

The build runs in parts (the bench, the default runs, PPO on the control model's codes, CarRacing,
the homework's activities, the first hour, the AE-versus-VAE comparison). A part that this very
code already built on this machine (OUT_DIR/parts/) is not run again, so a build stopped or cut
short by a session's end continues where it stopped; the README's provenance line says whether
every table came from one build of one code on one machine.

With BENCH, `tools/bench.py` runs first, and its own default runs (CartPole's and CarRacing's,
collection included) are the runs the results tables quote: one measurement feeds every
table that names the default run. Without it, make_docs times a default run itself. Each
run is scored by `evaluate_vae.py --fresh 2000` and drawn by `sample_vae.py`; then
`compare_vae.py` runs. A table sits in its page between `<!-- NAME: ... -->` and
`<!-- NAME end -->`, with the machine, the date and the command in that first line; the
prose around it quotes no number the table holds.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
import compare_vae  # noqa: E402
import encode_vae  # noqa: E402
import evaluate_vae  # noqa: E402
import sample_vae  # noqa: E402
import train_vae  # noqa: E402
from examples import ppo_on_codes  # noqa: E402
from tools import activities, bench, bench_ppo, first_hour, homework  # noqa: E402
from worldvae import REPO, cli, compute, constants, files  # noqa: E402
from worldvae.checkpoints import load_checkpoint, save_compact  # noqa: E402

# -----------------------------------------------------------------------------
CAR = True  # also CarRacing-v3 with its own defaults (needs requirements-envs.txt; ~5 minutes)
COMPARE = True  # also train the autoencoder and four VAEs for the AE-vs-VAE table and pictures (~12 minutes)
BENCH = True  # also run tools/bench.py: the performance, threads and scaling tables, the quality curves (~45 minutes)
ACTIVITIES = True  # also run the homework's five activities (tools/activities.py) for docs/homework.md (~15 minutes)
PPO = True  # also run tools/bench_ppo.py: PPO on the control model's codes beside PPO on the state (~25 minutes)
FIRST_HOUR = True  # also run tools/first_hour.py: the README's first commands timed idle and busy (~15 minutes)
TABLES_ONLY = False  # only rewrite the constants tables (and first_hour's and bench --gpu's, if written); nothing runs
FRESH = 2000  # new frames (another seed) each default run is scored on
OUT_DIR = "outputs/docs"  # the runs behind the pictures; the pictures themselves go to docs/
# -----------------------------------------------------------------------------

_README, _DOCS, _PRETRAINED = REPO / "README.md", REPO / "docs", REPO / "pretrained"
_PAGES = {  # each table, and the page that holds it
    "provenance": _README, "results": _README, "control": _README, "times": _README,
    "constants": _DOCS / "constants.md", "constants_more": _DOCS / "constants.md",
    "activities": _DOCS / "homework.md", "car": _DOCS / "carracing-atari.md", "ppo": _DOCS / "carracing-atari.md",
    "compare": _DOCS / "evaluation.md", "bench": _DOCS / "performance.md",
    "threads": _DOCS / "performance.md", "gpu": _DOCS / "performance.md", "scaling": _DOCS / "scaling-out.md",
}
_PARTS = ("bench", "results", "control", "ppo", "car", "activities", "first_hour", "compare")  # a whole build, in order
_BUILT = ("docs/", "README.md", "pretrained/")  # what a build writes: not part of the code its numbers depend on
_README_SCRIPTS = (train_vae, sample_vae)  # the knobs a newcomer turns, first on the constants page
_OTHER_SCRIPTS = (evaluate_vae, encode_vae, compare_vae, ppo_on_codes, bench, bench_ppo, homework, first_hour,
                  activities, sys.modules[__name__])
_KL_WEIGHTS = "(1e-6, 1e-5, 1e-4, 1e-3)"


def constants_tables(modules: Sequence[ModuleType]) -> str:
    """One markdown table per script: each constant, its default, its comment."""
    blocks = []
    for module in modules:
        rows = [f"| `{name}` | `{_literal(knob.value)}` | {knob.help} |"
                for name, knob in constants.knobs(module).items()]
        blocks.append(f"`{constants.script_path(module)}`:\n\n| constant | default | meaning |\n| --- | --- | --- |\n"
                      + "\n".join(rows))
    return "\n\n".join(blocks)


def _literal(value: object) -> str:
    """A Python literal as the README shows it: strings in double quotes."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def replace_block(text: str, name: str, body: str, provenance: str) -> str:
    """Put `body` between the page's `<!-- name: ... -->` and `<!-- name end -->` markers."""
    pattern = re.compile(rf"<!-- {name}: .*?-->\n.*?<!-- {name} end -->", re.S)
    if not pattern.search(text):
        raise cli.UserError(f"the page has no `<!-- {name}: ... -->` ... `<!-- {name} end -->` block")
    visible = f"*Measured on {provenance}.*\n\n" if provenance else ""
    return pattern.sub(lambda _: f"<!-- {name}: written by `python tools/make_docs.py`; do not edit by hand -->\n"
                       f"{visible}{body}\n<!-- {name} end -->", text)


class Pages:
    """The README and the docs/ pages, read once, their blocks rewritten, written back together."""

    def __init__(self) -> None:
        self.texts = {path: path.read_text() for path in set(_PAGES.values())}

    def write_block(self, name: str, body: str, provenance: str = "") -> None:
        self.texts[_PAGES[name]] = replace_block(self.texts[_PAGES[name]], name, body, provenance)

    def save(self) -> None:
        for path, text in self.texts.items():
            files.atomic_write(path, lambda f, text=text: f.write(text.encode()))


def score_run(run: Path, seconds: float, cfg, prefix: str | None = "", pretrained: Path | None = None) -> str:
    """Score a finished run on fresh frames, copy its pictures to docs/ (names starting with `prefix`;
    None: none), ship a compact copy of it as `pretrained`, and give its results table, with
    `seconds`, its wall time."""
    evaluate_vae.main(["--checkpoint", str(run / "vae.pt"), "--fresh", str(cfg.fresh), "--out_dir", str(run / "eval")])
    sample_vae.main(["--checkpoint", str(run / "vae.pt"), "--rollout", "--out_dir", str(run / "eval")])
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    with open(run / "metrics.csv") as f:
        epochs = list(csv.DictReader(f))
    for name in ("samples.png", "reconstructions.png", "traversal.png", "interpolation.png", "latent_scatter.png",
                 "rollout.gif", "loss_curves.png"):
        if prefix is not None:
            shutil.copyfile(run / ("" if name == "loss_curves.png" else "eval") / name, _DOCS / f"{prefix}{name}")
    dataset = [*next(run.glob("frames_*")).iterdir()]
    probe = ", ".join(f"{name} {r2:.3f}" for name, r2 in metrics["probe_r2"].items()) or "(no state vector)"
    rows = [
        ("wall time of the run, collection included", f"{seconds:.0f} s"),
        ("training speed (last epoch)", f"{float(epochs[-1]['images_per_s']):.0f} images/s"),
        (f"held-out reconstruction MSE per pixel ({metrics['data']})", f"**{metrics['mse']:.6f}**"),
        ("PSNR", f"{metrics['psnr_db']:.1f} dB"),
        ("implausible samples, fitted prior / N(0, I) (a perfect model: about 5%)", by_prior(metrics)),
        ("recall: fresh frames some sample comes within the same line of, fitted prior / N(0, I) (as many real "
         f"frames of other episodes: {metrics['plausibility']['normal']['perfect_recall']:.0%})",
         by_prior(metrics, "recall")),
        ("samples: MSE to the nearest training frame, median / 90th percentile",
         f"{metrics['sample_nearest_mse_median']:.6f} / **{metrics['sample_nearest_mse_p90']:.6f}**"),
        ("KL, and active latent dimensions (KL > 0.01 nats)",
         f"{metrics['kl_total']:.2f} nats, {metrics['active_dims']} of {len(metrics['kl_per_dim'])}"),
        ("linear probe R^2 from the latent mean (held-out)", probe),
        ("disk used by OUT_DIR (dataset, vae.pt, last.pt)", f"{_mb(*run.iterdir(), *dataset)} ({_mb(*dataset)}, "
         f"{_mb(run / 'vae.pt')}, {_mb(run / 'last.pt')})"),
    ]
    if metrics["road_iou"] is not None:
        rows.insert(3, (f"road kept: IoU of road pixels, frame against reconstruction ({metrics['frames_showing_road']}"
                        " frames that show road)", f"**{metrics['road_iou']:.3f}**"))
    for policy, score in metrics.get("by_policy", {}).items():
        iou = "-" if score["road_iou"] is None else f"{score['road_iou']:.3f}"
        phantom = "-" if score["phantom_road_rate"] is None else f"{score['phantom_road_rate']:.1%}"
        rows.append((f"{score['frames']} fresh frames of the {policy} policy: MSE, road IoU, phantom-road rate",
                     f"{score['mse']:.6f}, {iou}, {phantom}"))
    if "control" in metrics:
        c, worst = metrics["control"], metrics["control"]["worst"]
        degrees = " and ".join(name.removeprefix("degree ") for name in c["readout_r2"])
        rows.append((f"control check: {len(c['controllers'])} fixed controllers, each through readouts of degree "
                     f"{degrees}, {c['episodes']} episodes of at most 500 steps: the worst combination "
                     f"(`{worst['controller']}`, degree {worst['readout_degree']}), its mean / worst episode (that "
                     "controller on the true state)",
                     f"**{worst['mean_steps']:.0f} / {worst['worst_steps']}** ({worst['true_state_mean_steps']:.0f} / "
                     f"{worst['true_state_worst_steps']})"))
        for name, gains in c["controllers"].items():
            cells = ", ".join(f"degree {x['readout_degree']}: {x['mean_steps']:.0f} / {x['worst_steps']}"
                              for x in c["combinations"] if x["controller"] == name)
            rows.append((f"controller `{name}`, gains {tuple(gains)} on (x, x_dot, theta, theta_dot): mean / worst",
                         cells))
    if pretrained is not None:
        scores = {key: metrics[key] for key in ("mse", "road_iou", "control", "by_policy") if key in metrics}
        save_compact(pretrained, load_checkpoint(run / "vae.pt"), scores)
        rows.append(("shipped as", f"`{pretrained.relative_to(REPO)}` ({_mb(pretrained)})"))
    return "| measurement | value |\n| --- | --- |\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def by_prior(metrics: dict, key: str = "implausible") -> str:
    """One of the samples' judgements (worldvae/plausible.py) for each prior the checkpoint offers:
    fitted / N(0, I)."""
    judged = metrics["plausibility"]
    fitted = f"**{judged['fitted'][key]:.0%}**" if "fitted" in judged else "-"
    return f"{fitted} / {judged['normal'][key]:.0%}"


def run_table(block: str, run: Path, seconds: float | None, flags: list[str], command: str, cfg,
              prefix: str | None, shipped: str, where: str) -> dict[str, tuple[str, str]]:
    """A default run (done already, in `seconds`, or made and timed here with `flags`), scored, drawn and
    shipped as pretrained/`shipped`: its results table, for `block`."""
    seconds = seconds or timed_default_run(run, flags)
    return {block: (score_run(run, seconds, cfg, prefix, _PRETRAINED / shipped), f"{where}, by `{command}`")}


def timed_default_run(run: Path, env_argv: Sequence[str] = ()) -> float:
    """A default run (of `env_argv`'s env, with its other constants) from a cold start: its wall seconds."""
    shutil.rmtree(run, ignore_errors=True)  # collection is part of the run
    start = time.perf_counter()
    train_vae.main([*env_argv, "--out_dir", str(run)])
    return time.perf_counter() - start


def _mb(*paths: Path) -> str:
    return f"{sum(p.stat().st_size for p in paths if p.is_file()) / 1e6:.1f} MB"


def activity_table(out_dir: Path, fresh: int) -> str:
    """Run the homework's five activities as their commands do, score each on `fresh` frames of another
    seed, copy the two images each saved to docs/homework/, and give docs/homework.md's table."""
    root = out_dir / "activities"
    shutil.rmtree(root, ignore_errors=True)  # make_docs' own runs: each build starts them afresh
    (_DOCS / "homework").mkdir(exist_ok=True)
    rows = []
    for activity in activities.listed():
        run = activities.run_activity(activity, root)
        evaluate_vae.main(["--checkpoint", str(run / "vae.pt"), "--fresh", str(fresh), "--out_dir", str(run / "eval")])
        metrics = json.loads((run / "eval" / "metrics.json").read_text())
        for i in range(2):
            shutil.copyfile(run / "samples" / f"sample_{i:03d}.png", _DOCS / "homework" /
                            f"activity{activity.number}_sample_{i}.png")
        kl = ("- (no KL)" if not metrics["variational"] else
              f"{metrics['kl_total']:.2f} nats, {metrics['active_dims']} of {len(metrics['kl_per_dim'])} active")
        rows.append(f"| {activity.number}. {activity.title} | {metrics['env_id']} | {metrics['mse']:.6f} | {kl} | "
                    f"{by_prior(metrics)} |")
    return ("| activity | env | held-out MSE | KL, active dimensions | implausible samples, fitted prior / N(0, I) |\n"
            "| --- | --- | --- | --- | --- |\n" + "\n".join(rows))


def ppo_table(out_dir: Path) -> str:
    """Run tools/bench_ppo.py (the shipped control model's codes, which the control part just wrote) and give
    its table: each seed's test returns on the codes and on the true state, then all seeds and their ratio."""
    report = bench_ppo.main(["--out_dir", str(out_dir)])
    rows = [f"| {codes['seed']} | {codes['mean_return']:.1f} / {codes['worst_return']:.0f} | "
            f"{state['mean_return']:.1f} / {state['worst_return']:.0f} |"
            for codes, state in zip(report["runs"]["codes"], report["runs"]["state"], strict=True)]
    mean, worst = report["mean_return"], report["worst_return"]
    rows.append(f"| all seeds | **{mean['codes']:.1f}** / {worst['codes']:.0f} | {mean['state']:.1f} / "
                f"{worst['state']:.0f} |")
    return (f"| seed | PPO on {report['n_stack']} stacked codes: mean / worst test return | PPO on the true state: "
            f"mean / worst |\n| --- | --- | --- |\n" + "\n".join(rows)
            + f"\n\nCodes against state: **{report['ratio']:.1%}** of the state's mean return, "
            f"{report['total_steps']:,} steps a side.")


def comparison(out_dir: Path) -> str:
    compare_vae.main(["--kl_weights", _KL_WEIGHTS, "--out_dir", str(out_dir / "compare")])
    shutil.copyfile(out_dir / "compare" / "samples.png", _DOCS / "ae_vs_vae_samples.png")
    shutil.copyfile(out_dir / "compare" / "beta_sweep.png", _DOCS / "beta_sweep.png")
    return (out_dir / "compare" / "comparison.md").read_text().strip()


def bench_part(bench_dir: Path, car: bool, where: str) -> dict[str, tuple[str, str]]:
    """Run tools/bench.py, copy its quality curves to docs/, and give its three tables."""
    bench.main(["--out_dir", str(bench_dir), "--car_quality", str(car)])
    for name in ("quality_vs_time.png", "car_quality_vs_time.png"):
        if (bench_dir / name).exists():
            shutil.copyfile(bench_dir / name, _DOCS / name)
    tables = bench_tables(json.loads((bench_dir / "bench.json").read_text()))
    return {name: (table, f"{where}, by `python tools/bench.py`") for name, table in tables.items()}


def bench_tables(results: dict) -> dict[str, str]:
    """bench.json's tables as markdown: performance, threads, one process against two."""
    rows = "\n".join(f"| {name.strip()} | {value} | {note} |" for name, value, note in results["table"])
    threads = "\n".join(f"| {t} | {n} | {s} | {i} |" for t, n, s, i in results["threads_table"])
    scaling = "\n".join(f"| {processes} | {images} | {mse} |" for processes, images, mse in results["scaling_table"])
    return {"bench": "| measurement | value | note |\n| --- | --- | --- |\n" + rows,
            "threads": "| THREADS | busy neighbours | wall s | images/s |\n| --- | --- | --- | --- |\n" + threads,
            "scaling": "| processes | images/s, all together | held-out MSE |\n| --- | --- | --- |\n" + scaling}


def times_table(report: dict) -> str:
    """tools/first_hour.py's times: each command, alone and beside busy programs."""
    lines = [f"| `{r['command']}` | {r['idle_seconds']:.0f} s | {r['busy_seconds']:.0f} s |" for r in report["times"]]
    return (f"| command | idle | beside {report['neighbours']} CPU-bound programs |\n| --- | --- | --- |\n"
            + "\n".join(lines))


def gpu_table(out_dir: Path) -> tuple[str, str]:
    """The GPU acceptance check's table, if `tools/bench.py --gpu` wrote one; else what to run."""
    path = out_dir / "bench" / "gpu.json"
    if not path.exists():
        return ("Not yet measured: no run of `python tools/bench.py --gpu` has been recorded here. On a machine "
                "with an NVIDIA GPU, run it, then `python tools/make_docs.py --tables_only` (same `--out_dir`).", "")
    results = json.loads(path.read_text())
    rows = "\n".join(f"| {r['check']} | {r['seconds']} | {r['result']} |" for r in results["gpu"])
    return "| check | wall s | result |\n| --- | --- | --- |\n" + rows, _where(results["machine"])


def _where(machine: dict) -> str:
    bf16 = "" if machine.get("avx512_bf16") is None else f", AVX-512 BF16 {'yes' if machine['avx512_bf16'] else 'no'}"
    return (f"{machine['cpu']}, {machine['cores']} cores, AMX {'yes' if machine['amx'] else 'no'}{bf16}, "
            f"device {machine['device']}, torch {machine['torch']}, {datetime.date.today()}")


class Build:
    """The build, part by part. A part done by this very code on this machine (its record in OUT_DIR/parts/)
    is not run again: its tables are taken from the record, and its pictures are already in docs/. Each part's
    pages are saved as soon as it ends, so a build stopped half-way keeps what it measured, and a build too
    long for one sitting finishes across several."""

    def __init__(self, out_dir: Path, pages: Pages) -> None:
        self.records, self.pages = out_dir / "parts", pages
        self.records.mkdir(exist_ok=True)
        self.stamp = {"code": code_version(), "machine": compute.machine()}
        self.where = _where(self.stamp["machine"])

    def part(self, name: str, run: Callable[[], dict[str, tuple[str, str]]]) -> None:
        """Run part `name`, which gives {block: (table, its provenance)} measured here and now, or take that
        from its record."""
        record = self.records / f"{name}.json"
        saved = read_record(record) or {}
        if saved.get("stamp") == self.stamp:
            print(f"make_docs: {name} was built by this code on this machine ({saved['when']}); its tables are kept")
        else:
            saved = {"stamp": self.stamp, "when": self.where, "blocks": run()}
            files.atomic_write(record, lambda f: f.write(json.dumps(saved, indent=2).encode()))
        for block, (body, provenance) in saved["blocks"].items():
            self.pages.write_block(block, body, provenance)
        self.pages.save()


def read_record(path: Path) -> dict | None:
    """A part's record (its stamp, when and where, its tables), or None where there is none or it is damaged
    (a part whose record cannot be read is built again, as one never built)."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if isinstance(record["stamp"], dict) and isinstance(record["when"], str) and all(
                isinstance(body, str) and isinstance(where, str) for body, where in record["blocks"].values()):
            return record
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    print(f"make_docs: {path} is damaged; its part is built again")
    return None


def code_version() -> str:
    """A digest of every file the repo tracks but the pages and checkpoints this build writes: what the
    numbers depend on, uncommitted edits included."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256()
    for name in sorted(listed.splitlines()):
        path = REPO / name
        if not name.startswith(_BUILT) and path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def provenance(out_dir: Path) -> str:
    """The README's one line on where every table came from, read from the parts' records."""
    records = {name: record for name in _PARTS if (record := read_record(out_dir / "parts" / f"{name}.json"))}
    stamps = {json.dumps(record["stamp"], sort_keys=True) for record in records.values()}
    if len(records) == len(_PARTS) and len(stamps) == 1:
        code = next(iter(records.values()))["stamp"]["code"]
        return (f"Every table on these pages comes from one build (`python tools/make_docs.py`) of one version of "
                f"the code (digest `{code}`), on one machine: {next(iter(records.values()))['when']}.")
    missing = [name for name in _PARTS if name not in records]
    return ("These pages were built in parts, not yet in one build of one code on one machine: each table's own "
            "line says where and when it was measured" + (f"; not built here: {', '.join(missing)}" if missing
                                                           else "") + ".")


def main(argv: Sequence[str] | None = None) -> None:
    cfg = constants.parse_config(__name__, argv)
    cli.require(50 <= cfg.fresh <= 50_000, f"FRESH must lie in 50 .. 50000 frames (what evaluate_vae.py scores on), "
                f"got {cfg.fresh}")  # before any work: the docs build runs for hours
    pages = Pages()
    pages.write_block("constants", constants_tables(_README_SCRIPTS))
    pages.write_block("constants_more", constants_tables(_OTHER_SCRIPTS))
    out_dir = Path(cfg.out_dir)
    if not cfg.tables_only:
        out_dir = files.prepare_out_dir(cfg.out_dir)
        _DOCS.mkdir(exist_ok=True)
        _PRETRAINED.mkdir(exist_ok=True)
        build = Build(out_dir, pages)
        where, bench_dir = build.where, out_dir / "bench"
        if cfg.bench:  # its default runs are the ones the results tables quote
            build.part("bench", lambda: bench_part(bench_dir, cfg.car, where))
        results = json.loads((bench_dir / "bench.json").read_text()) if cfg.bench else {}
        cartpole = results.get("quality", {}).get("ours", [{}])[-1]  # the bench's own default runs, if it ran
        build.part("results", lambda: run_table(
            "results", Path(cartpole.get("run", out_dir / "default_run")), cartpole.get("seconds"), [],
            "python train_vae.py", cfg, "", "cartpole.pt", where))
        control = ["--policy", "balancer", "--reset_after", "None"]
        build.part("control", lambda: run_table(
            "control", out_dir / "control_run", None, control,
            f"python train_vae.py {' '.join(control)} --out_dir outputs/control", cfg, None, "cartpole_control.pt",
            where))
        if cfg.ppo:
            build.part("ppo", lambda: {"ppo": (ppo_table(out_dir / "bench_ppo"), f"{where}, by `python "
                                               "tools/bench_ppo.py`")})
        if cfg.car:
            car = results.get("car_quality", [{}])[-1]
            build.part("car", lambda: run_table(
                "car", Path(car.get("run", out_dir / "car_default_run")), car.get("seconds"),
                ["--env_id", "CarRacing-v3"], "python train_vae.py --env_id CarRacing-v3", cfg, "car_",
                "carracing.pt", where))
        if cfg.activities:
            build.part("activities", lambda: {"activities": (
                activity_table(out_dir, cfg.fresh), f"{where}, by `python tools/activities.py`, each scored by "
                f"`python evaluate_vae.py --fresh {cfg.fresh}`")})
        if cfg.first_hour:  # its table is read from its times.json below, as with --tables_only
            build.part("first_hour", lambda: first_hour.main(["--out_dir", str(out_dir / "first_hour")]) or {})
        if cfg.compare:
            build.part("compare", lambda: {"compare": (
                comparison(out_dir), f"{where}, by `python compare_vae.py --kl_weights \"{_KL_WEIGHTS}\"`")})
    times = out_dir / "first_hour" / "times.json"  # as the GPU table: from the last run of its tool, if any
    if times.exists():
        report = json.loads(times.read_text())
        pages.write_block("times", times_table(report), f"{_where(report['machine'])}, by `python tools/first_hour.py`")
    table, machine = gpu_table(out_dir)
    pages.write_block("gpu", table, f"{machine}, by `python tools/bench.py --gpu`" if machine else "")
    pages.write_block("provenance", provenance(out_dir))
    pages.save()
    print(f"rewrote {_README} and the pages in {_DOCS}/" + ("" if cfg.tables_only else ", with their pictures"))


if __name__ == "__main__":
    cli.run(main)
