"""Regenerate every picture in docs/ and every table the README and docs/ pages quote, from the code as it is.

    python tools/make_docs.py                 # the whole build: its plan first, then a line as each part ends
    python tools/make_docs.py --status        # every table, its stamp, and whether the build would redo it
    python tools/make_docs.py --tables_only   # render every table from its record again; nothing runs

The build runs in parts (the bench, the default runs, PPO on the control model's codes, CarRacing,
the homework's activities, the first hour, the AE-versus-VAE comparison), each a module of tools/parts/
run in a process of its own (tools/docs_parts.py). A part's record (docs/records/PART.json, committed
with the pages) keeps its measurements, not its tables, and its stamp: the project files the part's
processes imported, its flags, the versions of torch, gymnasium and stable-baselines3, and the
machine. A part whose stamp the code as it is would give again is not run again: a build stopped half-way goes on where
it stopped, and an edit to a page, or to a file no part imports, redoes nothing. The tables are
rendered from the records, so a label's wording changes without measuring anything.

A table sits in its page between `<!-- NAME: ... -->` and `<!-- NAME end -->`, with the machine,
the date and the command in that first line; the prose around it quotes no number the table holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: its scripts and the library
import compare_vae  # noqa: E402
import encode_vae  # noqa: E402
import evaluate_vae  # noqa: E402
import sample_vae  # noqa: E402
import train_vae  # noqa: E402
from examples import carracing_controller, ppo_on_codes  # noqa: E402
from tools import activities, bench, bench_ppo, docs_parts, first_hour, homework  # noqa: E402
from tools.parts import DOCS  # noqa: E402
from worldvae import REPO, cli, compute, constants, files  # noqa: E402

# -----------------------------------------------------------------------------
CAR = True  # also CarRacing-v3 with its own defaults (needs requirements-envs.txt)
COMPARE = True  # also train the autoencoder and four VAEs for the AE-vs-VAE table and pictures
BENCH = True  # also run tools/bench.py: the performance, threads and scaling tables, the quality curves
ACTIVITIES = True  # also run the homework's five activities (tools/activities.py) for docs/homework.md
PPO = True  # also run tools/bench_ppo.py: PPO on the control model's codes beside PPO on the state
CONTROLLER = True  # also drive the shipped CarRacing controller on its held-out tracks (needs requirements-envs.txt)
FIRST_HOUR = True  # also run tools/first_hour.py: the README's first commands timed idle and busy
TABLES_ONLY = False  # only render every table from its record again (and the constants tables); nothing runs
STATUS = False  # only list every table, its stamp and whether the build would redo it; exit 0 when none
FRESH = 2000  # new frames (another seed) each default run is scored on
OUT_DIR = "outputs/docs"  # the runs behind the pictures; the pictures themselves go to docs/
# -----------------------------------------------------------------------------

_README, _DOCS = REPO / "README.md", DOCS
_RECORDS = _DOCS / "records"
_PAGES = {  # each table, and the page that holds it
    "provenance": _README, "results": _README, "control": _README, "times": _README,
    "constants": _DOCS / "constants.md", "constants_more": _DOCS / "constants.md",
    "activities": _DOCS / "homework.md", "car": _DOCS / "carracing-atari.md", "ppo": _DOCS / "carracing-atari.md",
    "controller": _DOCS / "carracing-atari.md",
    "compare": _DOCS / "evaluation.md", "bench": _DOCS / "performance.md",
    "threads": _DOCS / "performance.md", "gpu": _DOCS / "performance.md", "scaling": _DOCS / "scaling-out.md",
}
_PARTS = ("bench", "results", "control", "ppo", "car", "controller", "activities", "first_hour", "compare")  # a whole
# build, in order (tools/parts/): the bench's runs feed the results and CarRacing, the control run feeds PPO, and
# CarRacing's ships the V stage the controller reads
_BLOCKS = {  # the tables each part's measurements render to
    "bench": ("bench", "threads", "scaling"), "results": ("results",), "control": ("control",), "ppo": ("ppo",),
    "car": ("car",), "controller": ("controller",), "activities": ("activities",), "first_hour": ("times",),
    "compare": ("compare",)}
_MINUTES = {  # what each part took on a 2-core AMD EPYC, for the plan where this machine has no record yet
    "bench": 28, "results": 3, "control": 4, "ppo": 11, "car": 7, "controller": 10, "activities": 12, "first_hour": 12,
    "compare": 13}
_BUILT = ("docs/", "README.md", "pretrained/")  # what a build writes: not part of the code its numbers depend on
# what a part reads that no process of it imports: every file of the suite it times (one added there counts), the
# controller it drives
_READS_ALL = {"first_hour": "tests/", "controller": "pretrained/carracing_controller.json"}
_README_SCRIPTS = (train_vae, sample_vae)  # the knobs a newcomer turns, first on the constants page
_OTHER_SCRIPTS = (evaluate_vae, encode_vae, compare_vae, ppo_on_codes, carracing_controller, bench, bench_ppo, homework,
                  first_hour, activities, sys.modules[__name__])
_VERSIONED = ("torch", "gymnasium", "stable-baselines3")


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


_BLOCK = r"<!-- {name}: .*?-->\n(.*?)<!-- {name} end -->"


def replace_block(text: str, name: str, body: str, provenance: str) -> str:
    """Put `body` between the page's `<!-- name: ... -->` and `<!-- name end -->` markers."""
    pattern = re.compile(_BLOCK.format(name=name), re.S)
    if not pattern.search(text):
        raise cli.UserError(f"the page has no `<!-- {name}: ... -->` ... `<!-- {name} end -->` block")
    return pattern.sub(lambda _: f"<!-- {name}: written by `python tools/make_docs.py`; do not edit by hand -->\n"
                       f"{block_text(body, provenance)}<!-- {name} end -->", text)


def block_text(body: str, provenance: str) -> str:
    """What stands between a block's markers: the provenance line, the table."""
    return (f"*Measured on {provenance}.*\n\n" if provenance else "") + f"{body}\n"


class Pages:
    """The README and the docs/ pages, read once, their blocks rewritten, written back together."""

    def __init__(self) -> None:
        self.texts = {path: path.read_text() for path in set(_PAGES.values())}

    def block(self, name: str) -> str | None:
        """What the page holds between the block's markers now."""
        match = re.search(_BLOCK.format(name=name), self.texts[_PAGES[name]], re.S)
        return match[1] if match else None

    def write_block(self, name: str, body: str, provenance: str = "") -> None:
        self.texts[_PAGES[name]] = replace_block(self.texts[_PAGES[name]], name, body, provenance)

    def save(self) -> None:
        for path, text in self.texts.items():
            files.atomic_write(path, lambda f, text=text: f.write(text.encode()))


# ----------------------------------------------------------------------------- the tables, from measurements

def run_table(measured: dict) -> str:
    """A default run's table (tools/parts/runs.scored_run's measurements)."""
    metrics, disk = measured["metrics"], measured["disk_bytes"]
    probe = ", ".join(f"{name} {r2:.3f}" for name, r2 in metrics["probe_r2"].items()) or "(no state vector)"
    rows = [
        ("wall time of the run, collection included", f"{measured['seconds']:.0f} s"),
        ("training speed (last epoch)", f"{measured['images_per_s']:.0f} images/s"),
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
        ("disk used by OUT_DIR (dataset, vae.pt, last.pt)", f"{_mb(disk['out_dir'])} ({_mb(disk['dataset'])}, "
         f"{_mb(disk['vae.pt'])}, {_mb(disk['last.pt'])})"),
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
        rows += control_rows(metrics["control"])
    rows.append(("shipped as", f"`{measured['shipped']}` ({_mb(measured['shipped_bytes'])})"))
    return "| measurement | value |\n| --- | --- |\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def control_rows(c: dict) -> list[tuple[str, str]]:
    """The control check: its worst combination, named, with its own numbers; then every combination."""
    worst = c["worst"]
    degrees = " and ".join(name.removeprefix("degree ") for name in c["readout_r2"])
    rows = [(f"control check: {len(c['controllers'])} fixed controllers, each through readouts of degree {degrees}, "
             f"{c['episodes']} episodes of at most 500 steps: the worst combination (`{worst['controller']}`, degree "
             f"{worst['readout_degree']}), its mean / worst episode (that controller on the true state)",
             f"**{worst['mean_steps']:.0f} / {worst['worst_steps']}** ({worst['true_state_mean_steps']:.0f} / "
             f"{worst['true_state_worst_steps']})")]
    for name, gains in c["controllers"].items():
        cells = ", ".join(f"degree {x['readout_degree']}: {x['mean_steps']:.0f} / {x['worst_steps']}"
                          for x in c["combinations"] if x["controller"] == name)
        rows.append((f"controller `{name}`, gains {tuple(gains)} on (x, x_dot, theta, theta_dot): mean / worst", cells))
    return rows


def by_prior(metrics: dict, key: str = "implausible") -> str:
    """One of the samples' judgements (worldvae/plausible.py) for each prior the checkpoint offers:
    fitted / N(0, I)."""
    judged = metrics["plausibility"]
    fitted = f"**{judged['fitted'][key]:.0%}**" if "fitted" in judged else "-"
    return f"{fitted} / {judged['normal'][key]:.0%}"


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def activity_table(measured: dict) -> str:
    """docs/homework.md's table: each activity's run, scored on fresh frames."""
    rows = []
    for activity in measured["activities"]:
        metrics = activity["metrics"]
        kl = ("- (no KL)" if not metrics["variational"] else
              f"{metrics['kl_total']:.2f} nats, {metrics['active_dims']} of {len(metrics['kl_per_dim'])} active")
        rows.append(f"| {activity['number']}. {activity['title']} | {metrics['env_id']} | {metrics['mse']:.6f} | {kl} "
                    f"| {by_prior(metrics)} |")
    return ("| activity | env | held-out MSE | KL, active dimensions | implausible samples, fitted prior / N(0, I) |\n"
            "| --- | --- | --- | --- | --- |\n" + "\n".join(rows))


def ppo_table(report: dict) -> str:
    """tools/bench_ppo.py's report: each seed's test returns on the codes and on the true state, then all seeds
    and their ratio."""
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


def controller_table(measured: dict) -> str:
    """The shipped controller's evaluation beside a random policy and World Models' figures, then how it was
    trained."""
    evaluation, training = measured["evaluation"], measured["training"]
    kind = f"one hidden layer of {measured['hidden']}" if measured["hidden"] else "linear"
    first, count = training["tracks"]
    size = f"{measured['shipped_bytes'] / 1000:.0f} KB"
    rows = [f"| this controller ({kind}, `pretrained/carracing_controller.json`, {size}) | "
            f"**{evaluation['mean']:.0f} ± {evaluation['std']:.0f}** | {evaluation['worst']:.0f} |",
            f"| a uniformly random policy | {evaluation['random']['mean']:.0f} ± {evaluation['random']['std']:.0f} | "
            f"{evaluation['random']['worst']:.0f} |"]
    rows += [f"| World Models: {name} | {figure['mean']} ± {figure['std']} | - |"
             for name, figure in evaluation["world_models"].items()]
    return (f"| controller | mean ± std over tracks {evaluation['seeds'][0]:,} .. {evaluation['seeds'][1]:,} "
            f"({evaluation['tracks']}) | worst |\n| --- | --- | --- |\n" + "\n".join(rows)
            + f"\n\nTrained by `python examples/carracing_controller.py` ({training['method']}, {training['rounds']} "
            f"rounds of {training['episodes']} tracks: tracks {first:,} .. {first + count - 1:,}) in "
            f"{training['seconds'] / 60:.1f} minutes on {_where(training['machine'], training['date'])}.")


def bench_tables(results: dict) -> tuple[str, str, str]:
    """bench.json's tables as markdown: performance, threads, one process against two."""
    rows = "\n".join(f"| {name.strip()} | {value} | {note} |" for name, value, note in results["table"])
    threads = "\n".join(f"| {t} | {n} | {s} | {i} |" for t, n, s, i in results["threads_table"])
    scaling = "\n".join(f"| {processes} | {images} | {mse} |" for processes, images, mse in results["scaling_table"])
    return ("| measurement | value | note |\n| --- | --- | --- |\n" + rows,
            "| THREADS | busy neighbours | wall s | images/s |\n| --- | --- | --- | --- |\n" + threads,
            "| processes | images/s, all together | held-out MSE |\n| --- | --- | --- |\n" + scaling)


def times_table(report: dict) -> str:
    """tools/first_hour.py's times: each command, alone and beside busy programs."""
    lines = [f"| `{r['command']}` | {r['idle_seconds']:.0f} s | {r['busy_seconds']:.0f} s |" for r in report["times"]]
    return (f"| command | idle | beside {report['neighbours']} CPU-bound programs |\n| --- | --- | --- |\n"
            + "\n".join(lines))


def rendered(record: dict) -> dict[str, tuple[str, str]]:
    """A part's tables from its record: {block: (table, provenance)}, in _BLOCKS' order."""
    part, measured = record["part"], record["measurements"]
    if part == "bench":
        tables, command = bench_tables(measured), "python tools/bench.py"
    elif part in ("results", "control", "car"):
        tables, command = (run_table(measured),), measured["command"]
    elif part == "ppo":
        tables, command = (ppo_table(measured),), "python tools/bench_ppo.py"
    elif part == "controller":
        tables, command = (controller_table(measured),), "python examples/carracing_controller.py --evaluate True"
    elif part == "activities":
        tables, command = (activity_table(measured),), "python tools/activities.py"
    elif part == "first_hour":
        tables, command = (times_table(measured),), "python tools/first_hour.py"
    else:
        tables, command = (measured["table"],), f"python compare_vae.py --kl_weights \"{measured['kl_weights']}\""
    scored = (f", each scored by `python evaluate_vae.py --fresh {measured['fresh']} --control_episodes 0`"
              if part == "activities" else "")
    provenance = f"{_where(record['machine'], record['date'])}, by `{command}`{scored}"
    return {block: (table, provenance) for block, table in zip(_BLOCKS[part], tables, strict=True)}


def gpu_table(out_dir: Path) -> tuple[str, str]:
    """The GPU acceptance check's table, if `tools/bench.py --gpu` wrote one; else what to run."""
    path = out_dir / "bench" / "gpu.json"
    if not path.exists():
        return ("Not yet measured: no run of `python tools/bench.py --gpu` has been recorded here. On a machine "
                "with an NVIDIA GPU, run it, then `python tools/make_docs.py --tables_only` (same `--out_dir`).",
                "")
    results = json.loads(path.read_text())
    rows = "\n".join(f"| {r['check']} | {r['seconds']} | {r['result']} |" for r in results["gpu"])
    return ("| check | wall s | result |\n| --- | --- | --- |\n" + rows,
            f"{_where(results['machine'], results.get('date', 'an unrecorded date'))}, by `python tools/bench.py "
            "--gpu`, not by this build")


def _where(machine: dict, date: str) -> str:
    bf16 = "" if machine.get("avx512_bf16") is None else f", AVX-512 BF16 {'yes' if machine['avx512_bf16'] else 'no'}"
    return (f"{machine['cpu']}, {machine['cores']} cores, AMX {'yes' if machine['amx'] else 'no'}{bf16}, "
            f"device {machine['device']}, torch {machine['torch']}, {date}")


# ----------------------------------------------------------------------------- stamps, records, the build

def stamp(loaded: Sequence[str], flags: dict, machine: dict, uses: dict[str, str]) -> dict:
    """What a part's numbers depend on: the files it imported (each one's digest), its flags, the versions of
    the libraries that compute them, the machine, and the stamps of the parts whose output it reads."""
    return {"files": {name: file_digest(name) for name in loaded}, "flags": flags, "versions": versions(),
            "machine": machine, "uses": uses}


def file_digest(name: str) -> str:
    path = REPO / name
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"


def versions() -> dict[str, str | None]:
    found = {}
    for package in _VERSIONED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def stamp_digest(record: dict | None) -> str:
    return hashlib.sha256(json.dumps(record["stamp"], sort_keys=True).encode()).hexdigest()[:16] if record else ""


def record_path(part: str) -> Path:
    return _RECORDS / f"{part}.json"


def read_record(path: Path) -> dict | None:
    """A part's record, or None where there is none or it is damaged (a part whose record cannot be read
    is built again, as one never built)."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if (isinstance(record["stamp"], dict) and isinstance(record["loaded"], list)
                and isinstance(record["measurements"], dict) and isinstance(record["minutes"], (int, float))):
            return record
    except (OSError, ValueError, KeyError, TypeError):
        pass
    print(f"make_docs: {path} is damaged; its part is built again")
    return None


def part_flags(part: str, cfg) -> dict:
    """The flags of this build that a part's numbers depend on."""
    return {"bench": {"car": cfg.car}, "results": {"fresh": cfg.fresh, "bench": cfg.bench},
            "control": {"fresh": cfg.fresh}, "car": {"fresh": cfg.fresh, "bench": cfg.bench},
            "activities": {"fresh": cfg.fresh}}.get(part, {})


def uses(part: str, cfg) -> dict[str, str]:
    """The stamps (digests) of the parts whose output this one reads, as their records hold them now."""
    read = {"results": ("bench",) if cfg.bench else (), "car": ("bench",) if cfg.bench else (), "ppo": ("control",),
            "controller": ("car",)}
    return {name: stamp_digest(read_record(record_path(name))) for name in read.get(part, ())}


def changed(record: dict | None, part: str, cfg) -> list[str]:
    """Why the code as it is would build `part` again: what differs from its record's stamp; [] if nothing."""
    if record is None:
        return ["never built"]
    now = stamp(sorted({*record["loaded"], *read_all(part)}), part_flags(part, cfg), compute.machine(),
                uses(part, cfg))
    was = record["stamp"]
    reasons = [f"{name} changed" for name in sorted(now["files"]) if now["files"][name] != was["files"].get(name)]
    reasons += [f"{key} differ" for key in ("flags", "versions", "machine", "uses") if now[key] != was.get(key)]
    return reasons


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


def read_all(part: str) -> list[str]:
    """The tracked files of the folder a part runs whole (_READS_ALL), as the tree holds them now."""
    folder = _READS_ALL.get(part)
    return [name for name in tracked_files() if name.startswith(folder)] if folder else []


def chosen_parts(cfg) -> list[str]:
    """The parts of this build, in order: the bench's runs feed the results, the control run feeds PPO."""
    wanted = {"bench": cfg.bench, "ppo": cfg.ppo, "car": cfg.car, "controller": cfg.controller,
              "activities": cfg.activities,
              "first_hour": cfg.first_hour, "compare": cfg.compare}
    return [part for part in _PARTS if wanted.get(part, True)]


def run_part(part: str, out_dir: Path, cfg) -> dict:
    """Measure `part` in a process of its own, with every Python process it starts logging what it imported
    (tools/import_log/), and write its record: the measurements and their stamp."""
    log = out_dir / "imports" / part
    shutil.rmtree(log, ignore_errors=True)
    log.mkdir(parents=True)
    path = [str(REPO / "tools" / "import_log"), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "WORLDVAE_IMPORT_LOG": str(log), "PYTHONPATH": os.pathsep.join(filter(None, path))}
    flags = part_flags(part, cfg) | {"car": cfg.car, "fresh": cfg.fresh}
    done = subprocess.run([sys.executable, "-m", "tools.docs_parts", part, str(out_dir.resolve()), json.dumps(flags)],
                          cwd=REPO, env=env)
    if done.returncode != 0:
        raise cli.UserError(f"the {part} part stopped (exit {done.returncode}; its output is above): run the same "
                            "command again to go on from it")
    imported = {line for path in log.glob("*.txt") for line in path.read_text().split()}
    loaded = sorted({*(name for name in imported & set(tracked_files()) if not name.startswith(_BUILT)),
                     *read_all(part)})
    measured = json.loads(docs_parts.measured_path(out_dir, part).read_text())
    record = measured | {"loaded": loaded, "stamp": stamp(loaded, part_flags(part, cfg), measured["machine"],
                                                          uses(part, cfg))}
    _RECORDS.mkdir(exist_ok=True)
    text = json.dumps(record, indent=2)
    files.atomic_write(record_path(part), lambda f: f.write(text.encode()))
    return record


def build(cfg, out_dir: Path, pages: Pages) -> None:
    """The plan (each part kept, or run and about how long), then each part as it ends, its tables written."""
    plan = []
    for part in chosen_parts(cfg):
        record = read_record(record_path(part))
        plan.append((part, record, changed(record, part, cfg)))
    same_machine = {part: record["minutes"] for part, record, _ in plan
                    if record is not None and record["machine"] == compute.machine()}
    to_run = [part for part, _, reasons in plan if reasons]
    print(f"make_docs: {len(plan)} parts, {len(to_run)} to run, about "
          f"{sum(same_machine.get(p, _MINUTES[p]) for p in to_run):.0f} minutes:")
    for part, _, reasons in plan:
        print(f"  {part:<11} " + (f"run, ~{same_machine.get(part, _MINUTES[part]):.0f} min ({'; '.join(reasons)})"
                                  if reasons else "kept: its stamp is the code's as it is"))
    for part, record, _ in plan:
        if changed(record, part, cfg):  # again: a part it reads may have been built since the plan
            record = run_part(part, out_dir, cfg)
            print(f"make_docs: {part} done in {record['minutes']:.1f} min")
        for block, (body, provenance) in rendered(record).items():
            pages.write_block(block, body, provenance)
        pages.write_block("provenance", provenance_line(cfg))
        pages.save()


def render_all(pages: Pages, out_dir: Path, cfg) -> None:
    """Every table from what is recorded: the constants from the code, each part's from its record, the GPU
    check's from its own file, and the provenance line."""
    pages.write_block("constants", constants_tables(_README_SCRIPTS))
    pages.write_block("constants_more", constants_tables(_OTHER_SCRIPTS))
    for part in _PARTS:
        record = read_record(record_path(part))
        for block, (body, provenance) in (rendered(record) if record else {}).items():
            pages.write_block(block, body, provenance)
    table, provenance = gpu_table(out_dir)
    pages.write_block("gpu", table, provenance)
    pages.write_block("provenance", provenance_line(cfg))


def provenance_line(cfg) -> str:
    """The README's one line on where every table came from: one build only when every part's record is current
    and all come from one machine."""
    records = {part: read_record(record_path(part)) for part in _PARTS}
    current = all(record is not None and not changed(record, part, cfg) for part, record in records.items())
    machines = {json.dumps(record["machine"], sort_keys=True) for record in records.values() if record}
    if current and len(machines) == 1:
        digest = hashlib.sha256("".join(stamp_digest(record) for record in records.values()).encode()).hexdigest()
        first = next(iter(records.values()))
        return (f"Every table on these pages but the GPU check's comes from one build (`python tools/make_docs.py`) "
                f"of one code (digest `{digest[:16]}`, over the files each part imported), on one machine: "
                f"{_where(first['machine'], first['date'])}.")
    missing = [part for part, record in records.items() if record is None]
    return ("These pages were built in parts, not yet in one build of one code on one machine: each table's own "
            "line says where and when it was measured" + (f"; without a record in docs/records/: {', '.join(missing)}"
                                                           if missing else "")
            + ".")


def status(cfg, out_dir: Path) -> bool:
    """Every table on every page, its stamp, and whether the build would redo it; True when none."""
    pages, fresh = Pages(), Pages()
    render_all(fresh, out_dir, cfg)
    part_of = {block: part for part, blocks in _BLOCKS.items() for block in blocks}
    all_current = True
    for block, page in _PAGES.items():
        part = part_of.get(block)
        record = read_record(record_path(part)) if part else None
        if part is None:
            source = ("from `python tools/bench.py --gpu` on another machine, not this build" if block == "gpu"
                      else "rendered from the code")
            reasons = []
        else:
            source = (f"part {part}, stamp {stamp_digest(record)} ({len(record['loaded'])} files, "
                      f"{record['date']})" if record else f"part {part}")
            reasons = changed(record, part, cfg)
        if not reasons and pages.block(block) != fresh.block(block):
            reasons = ["the page differs from its record: `python tools/make_docs.py --tables_only`"]
        all_current &= not reasons
        print(f"{page.relative_to(REPO)} {block}: {source}: " + ("current" if not reasons else
                                                                "stale, " + "; ".join(reasons)))
    return all_current


def main(argv: Sequence[str] | None = None) -> None:
    cfg = constants.parse_config(__name__, argv)
    cli.require(50 <= cfg.fresh <= 50_000, f"FRESH must lie in 50 .. 50000 frames (what evaluate_vae.py scores on), "
                f"got {cfg.fresh}")  # before any work: the docs build runs for an hour and more
    out_dir = Path(cfg.out_dir)
    if cfg.status:
        if not status(cfg, out_dir):
            raise SystemExit(1)
        return
    pages = Pages()
    if not cfg.tables_only:
        out_dir = files.prepare_out_dir(cfg.out_dir)
        build(cfg, out_dir, pages)
    render_all(pages, out_dir, cfg)
    pages.save()
    print(f"rewrote {_README} and the pages in {_DOCS}/" + ("" if cfg.tables_only else ", with their pictures"))


if __name__ == "__main__":
    cli.run(main)
