"""The README is what users follow: its commands are CI's, its tables list every constant with its real default."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from conftest import REPO

import compare_vae
import encode_vae
import evaluate_vae
import sample_vae
import train_vae
from examples import carracing_controller, ppo_on_codes
from tools import activities, bench, bench_ppo, first_hour, homework, make_docs
from worldvae import cli, constants

README = (REPO / "README.md").read_text()


def test_ci_runs_exactly_the_readme_install_and_test_commands() -> None:
    ci = [line for line in (REPO / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    install, test = ci[-2], ci[-1]
    assert install == "pip install -r requirements.txt -r requirements-envs.txt -e ."
    assert test == "python -m pytest -q -n auto"
    assert f"\n{install}\n" in README and f"\n{test}\n" in README


def readme_table(script: str) -> dict[str, str]:
    """The constants table for `script`, in the README or a docs/ page: NAME -> the default as written."""
    pattern = rf"^`{re.escape(script)}`:\n\n\| constant \| default \| meaning \|\n\|.*\|\n((?:\|.*\|\n)+)"
    match = next(filter(None, (re.search(pattern, text, re.M) for text in _documents().values())), None)
    assert match, f"no page has a constants table for {script}"
    return dict(re.findall(r"^\| `([A-Z_0-9]+)` \| `([^`]*)` \|", match.group(1), re.M))


@pytest.mark.parametrize("module", [train_vae, sample_vae, evaluate_vae, encode_vae, compare_vae, ppo_on_codes, bench,
                                    bench_ppo, homework, first_hour, activities, make_docs])
def test_readme_tables_list_every_constant_with_its_real_default(module) -> None:
    table = readme_table(constants.script_path(module))
    knobs = constants.knobs(module)
    assert list(table) == list(knobs), f"{module.__name__}: the README's rows differ from the constants"
    for name, knob in knobs.items():
        assert ast.literal_eval(table[name]) == knob.value, f"README says {name} = {table[name]}"


SCRIPT_FILES = sorted(p for p in REPO.glob("*.py") if p.name != "MyVAE.py")  # what a user runs, at the top
LIBRARY = sorted((REPO / "worldvae").glob("*.py"))  # the package beneath them
TOOLS = sorted((REPO / "tools").rglob("*.py"))  # the maintainers' tools, and the docs build's parts
EXAMPLES = sorted((REPO / "examples").glob("[!_]*.py"))  # recipes for what users put on top: the library's clients
# may call another script's main(argv) or read its constants (constants.defaults), nothing else
ORCHESTRATORS = {"compare_vae.py", *(f"tools/{name}.py" for name in ("bench", "homework", "activities", "make_docs",
                                                                      "bench_ppo", "docs_parts")),
                 *(f"tools/parts/{p.name}" for p in (REPO / "tools" / "parts").glob("*.py"))}


def _our_imports(path) -> set[str]:
    """The repo's modules `path` imports, as dotted names: train_vae, MyVAE, worldvae.store, tools.bench."""
    ours = {p.stem for p in REPO.glob("*.py")} | {"worldvae", "tools", "examples"}
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {f"{node.module}.{alias.name}" if (REPO / str(node.module) / f"{alias.name}.py").exists()
                      else node.module for alias in node.names}
    return {name for name in names if name.split(".")[0] in ours}


def test_the_top_of_the_tree_holds_what_a_user_runs_and_the_library_one_package_beneath() -> None:
    assert {p.name for p in REPO.glob("*.py")} == {"MyVAE.py", "train_vae.py", "sample_vae.py", "evaluate_vae.py",
                                                     "encode_vae.py", "compare_vae.py"}
    assert {"cli.py", "constants.py", "progress.py", "files.py", "envs.py", "policies.py", "rendering.py",
            "collection.py", "dataset.py", "heldout.py", "store.py", "readers.py", "distributed.py", "pictures.py",
            "compute.py", "checkpoints.py"} <= {p.name for p in LIBRARY}


def test_each_library_module_fits_its_one_job_and_the_training_script_reads_in_one_sitting() -> None:
    assert max(len(path.read_text().splitlines()) for path in LIBRARY) <= 400
    assert len((REPO / "train_vae.py").read_text().splitlines()) <= 335


def library_layers() -> dict[str, int]:
    """Each library module's layer, as docs/layout.md's table gives it."""
    table = (REPO / "docs" / "layout.md").read_text().split("| layer | modules |")[1]
    return {name: int(layer) for layer, names in re.findall(r"^\| (\d+) \| (.+) \|$", table, re.M)
            for name in re.findall(r"`(\w+)`", names)}


def test_imports_point_one_way_scripts_then_library_then_the_model() -> None:
    scripts = {p.stem for p in SCRIPT_FILES + EXAMPLES}
    assert _our_imports(REPO / "MyVAE.py") == set(), "the model file imports nothing of ours"
    for path in EXAMPLES:  # a recipe uses the library as a user's own project would: no script, no tool
        assert {name.split(".")[0] for name in _our_imports(path)} <= {"worldvae"}, path.name
    for path in LIBRARY:  # the library: itself and the model, never a script or a tool
        assert _our_imports(path) <= {f"worldvae.{p.stem}" for p in LIBRARY} | {"worldvae", "MyVAE"}, path.name
    layers = library_layers()
    assert set(layers) == {p.stem for p in LIBRARY if p.stem != "__init__"}, "docs/layout.md places every module"
    for path in LIBRARY:
        for name in _our_imports(path) - {"worldvae", "MyVAE"}:
            below = name.removeprefix("worldvae.")
            assert layers[below] < layers[path.stem], f"{path.name} imports {below}, not of a lower layer"
    for path in SCRIPT_FILES + TOOLS:
        imports = _our_imports(path)
        assert not {name for name in imports if name.startswith("tools")} - {"tools.bench"} or path in TOOLS, path.name
        if str(path.relative_to(REPO)) not in ORCHESTRATORS:
            assert not imports & scripts and not any(n.startswith("examples") for n in imports), \
                f"{path.name} imports a script"
            continue
        tree = ast.parse(path.read_text())  # an orchestrator may call another script's main(argv), nothing else
        imported = {alias.asname or alias.name.split(".")[-1] for node in ast.walk(tree)
                    if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names
                    if alias.name in scripts or f"{getattr(node, 'module', '')}.{alias.name}" == "tools.bench"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported:
                assert node.attr == "main", f"{path.name} uses {node.value.id}.{node.attr}"


def _documents() -> dict[str, str]:
    """The README and every page under docs/: what a reader follows."""
    return {"README.md": README} | {f"docs/{p.name}": p.read_text() for p in sorted((REPO / "docs").glob("*.md"))}


def test_every_file_a_readme_command_or_link_names_exists() -> None:
    for name, text in _documents().items():
        base = REPO if name == "README.md" else REPO / "docs"
        for script in re.findall(r"python (?:-m torch\.distributed\.run [^\n`]*?)?([\w/]+\.py)\b", text):
            assert (REPO / script).is_file(), f"{name} runs {script}, which does not exist"
        for link in re.findall(r"\]\(([^)#:]+?)(?:#[^)]*)?\)", text):  # relative links and pictures
            assert (base / link).exists(), f"{name} links to {link}, which does not exist"
        for path in re.findall(r"-r (requirements[\w-]*\.txt)", text):
            assert (REPO / path).is_file(), f"{name} installs from {path}, which does not exist"


def test_the_constants_blocks_are_what_make_docs_writes() -> None:
    """So `python tools/make_docs.py --tables_only` is all it takes to fix this test after changing a constant."""
    page = (REPO / "docs" / "constants.md").read_text()
    assert make_docs.constants_tables([train_vae, sample_vae]) in page, "the knobs a newcomer turns, first"
    others = make_docs.constants_tables([evaluate_vae, encode_vae, compare_vae, ppo_on_codes, carracing_controller,
                                         bench, bench_ppo, homework, first_hour, activities, make_docs])
    assert others in page


def test_the_readme_starts_short_and_links_every_page() -> None:
    assert len(README.encode()) <= 16_000, "the long sections live in docs/"
    first_screen = README[:README.index("## Run")]
    assert first_screen.index("--index-url https://download.pytorch.org/whl/cpu") < first_screen.index(
        "pip install -r requirements.txt -e ."), "the CPU build comes before the first pip command a newcomer copies"
    assert "--n_frames 2000 --epochs 1" in README[:README.index("## Test")], "a smoke run leads"
    assert "(docs/homework.md)" in first_screen, "the homework's activities, one click from the first screen"
    for page in ("homework", "data", "carracing-atari", "evaluation", "nothing-lost", "performance", "scaling-out",
                 "layout", "constants", "glossary"):
        assert f"(docs/{page}.md)" in README, page


def test_the_times_in_the_readme_are_of_the_commands_it_prints(tmp_path) -> None:
    printed = {line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", README, re.S)
               for line in block.splitlines()}
    timed = [shown for shown, _ in first_hour.commands(tmp_path, default_run=True, suite=True)]
    assert len(timed) == 4 and set(timed) <= printed, set(timed) - printed
    assert "<!-- times: " in README[README.index("## Run"):README.index("## Test")], "the table sits under Run"


def test_the_data_page_quotes_the_readers_own_shuffle_buffer() -> None:
    from worldvae import readers

    assert f"shuffle buffer of {readers._SHUFFLE_FRAMES:,} frames" in (REPO / "docs" / "data.md").read_text()


def test_every_table_says_where_and_when_it_was_measured_in_plain_sight() -> None:
    for name, text in _documents().items():
        for block, body in re.findall(r"<!-- (\w+): .*?-->\n(.*?)<!-- \1 end -->", text, re.S):
            if "| ---" in body and not block.startswith("constants"):
                assert body.startswith("*Measured on "), f"{name}: the {block} table hides its provenance"


def test_every_measured_block_on_the_pages_is_its_records_rendering() -> None:
    """What a page shows between a part's markers is what make_docs renders from that part's committed record,
    label for label: a table edited by hand, or a renderer changed without `--tables_only`, fails here."""
    pages = make_docs.Pages()
    for part, blocks in make_docs._BLOCKS.items():
        record = make_docs.read_record(make_docs.record_path(part))
        assert record is not None, f"docs/records/{part}.json: the committed pages come from a record of each part"
        tables = make_docs.rendered(record)
        assert tuple(tables) == blocks
        for block, (body, provenance) in tables.items():
            assert pages.block(block) == make_docs.block_text(body, provenance), f"{block}: not its record's table"


def test_make_docs_replaces_only_its_marked_blocks() -> None:
    text = "intro\n<!-- results: old; do not edit by hand -->\n| a | 1 |\n<!-- results end -->\noutro\n"
    new = make_docs.replace_block(text, "results", "| a | 2 |", "a test machine, 2026-12-01")
    assert new == ("intro\n<!-- results: written by `python tools/make_docs.py`; do not edit by hand -->\n"
                   "*Measured on a test machine, 2026-12-01.*\n\n| a | 2 |\n<!-- results end -->\noutro\n")
    with pytest.raises(cli.UserError, match="no `<!-- bench: ... -->`"):
        make_docs.replace_block(text, "bench", "x", "y")


def _one_part_tree(tmp_path, monkeypatch) -> tuple:
    """A checkout of two files and one page, and a docs build of one part (compare) that imported a.py."""
    from worldvae import compute

    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text(f"{name} = 1\n")
    page = tmp_path / "page.md"
    blocks = ("compare", "provenance", "constants", "constants_more", "gpu")
    page.write_text("".join(f"<!-- {name}: x -->\nold\n<!-- {name} end -->\n" for name in blocks))
    monkeypatch.setattr(make_docs, "REPO", tmp_path)
    monkeypatch.setattr(make_docs, "_RECORDS", tmp_path / "records")
    monkeypatch.setattr(make_docs, "_PAGES", dict.fromkeys(blocks, page))
    monkeypatch.setattr(make_docs, "_PARTS", ("compare",))
    cfg = constants.defaults(make_docs, out_dir=str(tmp_path / "out"))
    record = {"part": "compare", "flags": {}, "minutes": 12.0, "machine": compute.machine(), "date": "2026-12-07",
              "loaded": ["a.py"], "measurements": {"kl_weights": "(1e-5,)", "table": "| model |\n| --- |"}}
    record["stamp"] = make_docs.stamp(["a.py"], make_docs.part_flags("compare", cfg), compute.machine(),
                                      make_docs.uses("compare", cfg))
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "compare.json").write_text(json.dumps(record))
    return cfg, page


def test_the_status_turns_stale_when_a_file_the_part_imported_changes_and_only_then(tmp_path, monkeypatch,
                                                                                     capsys) -> None:
    cfg, page = _one_part_tree(tmp_path, monkeypatch)
    assert not make_docs.status(cfg, tmp_path / "out"), "the page does not hold the record's table yet"
    assert "compare: part compare" in capsys.readouterr().out
    make_docs.main(["--tables_only", "--out_dir", str(tmp_path / "out")])
    assert "| model |" in page.read_text() and "2026-12-07, by `python compare_vae.py" in page.read_text()
    assert "one build" in page.read_text(), "every part current, from one machine: one build"
    assert make_docs.status(cfg, tmp_path / "out"), "rendered from its record: current"
    (tmp_path / "b.py").write_text("b = 2\n")
    page.write_text(page.read_text() + "\nA reader's note, outside every block.\n")
    assert make_docs.status(cfg, tmp_path / "out"), "an edit to a file no part imported, or to a page: still current"
    (tmp_path / "a.py").write_text("a = 2\n")
    assert not make_docs.status(cfg, tmp_path / "out")
    assert "compare: part compare" in capsys.readouterr().out.split("stale, a.py changed")[0]
    with pytest.raises(SystemExit, match="1"):
        make_docs.main(["--status", "--out_dir", str(tmp_path / "out")])


def test_a_table_edited_by_hand_is_stale_and_a_label_changes_without_measuring(tmp_path, monkeypatch) -> None:
    cfg, page = _one_part_tree(tmp_path, monkeypatch)
    make_docs.main(["--tables_only", "--out_dir", str(tmp_path / "out")])
    page.write_text(page.read_text().replace("| model |", "| model, by hand |"))
    assert not make_docs.status(cfg, tmp_path / "out"), "the page no longer says what its record measured"
    make_docs.main(["--tables_only", "--out_dir", str(tmp_path / "out")])
    assert "| model |" in page.read_text() and make_docs.status(cfg, tmp_path / "out")


def test_a_test_file_added_to_the_suite_makes_the_part_that_times_the_suite_stale(tmp_path, monkeypatch,
                                                                                 capsys) -> None:
    """first_hour times the whole suite: a new test file changes that time, though no earlier build imported it."""
    import subprocess

    cfg, page = _one_part_tree(tmp_path, monkeypatch)
    monkeypatch.setattr(make_docs, "_READS_ALL", {"compare": "tests/"})
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    make_docs.main(["--tables_only", "--out_dir", str(tmp_path / "out")])
    assert make_docs.status(cfg, tmp_path / "out"), "no test file yet: current"
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_new.py").write_text("def test_it() -> None:\n    pass\n")
    assert make_docs.status(cfg, tmp_path / "out"), "a file git does not track is no part of the code"
    subprocess.run(["git", "add", "tests"], cwd=tmp_path, check=True)
    capsys.readouterr()
    assert not make_docs.status(cfg, tmp_path / "out")
    assert "stale, tests/test_new.py changed" in capsys.readouterr().out


def test_every_process_of_a_part_logs_the_project_files_it_imported(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "WORLDVAE_IMPORT_LOG": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(REPO / "tools" / "import_log"), str(REPO)])}
    subprocess.run([sys.executable, "-c", "import worldvae.prior"], env=env, check=True, cwd=tmp_path)
    (log,) = tmp_path.glob("*.txt")
    imported = log.read_text().split()
    assert "worldvae/prior.py" in imported and "MyVAE.py" in imported
    assert "train_vae.py" not in imported and not any("site-packages" in name for name in imported)


def test_the_ppo_table_gives_each_seed_both_sides_then_all_seeds_and_their_ratio() -> None:
    def run(seed: int, mean: float, worst: float) -> dict:
        return {"seed": seed, "mean_return": mean, "worst_return": worst}

    report = {"runs": {"codes": [run(0, 490.0, 300), run(1, 500.0, 500)], "state": [run(0, 500.0, 500),
                                                                                   run(1, 500.0, 500)]},
              "mean_return": {"codes": 495.0, "state": 500.0}, "worst_return": {"codes": 300, "state": 500},
              "ratio": 0.99, "n_stack": 4, "total_steps": 200_000}
    table = make_docs.ppo_table(report)
    assert table.splitlines()[2:5] == ["| 0 | 490.0 / 300 | 500.0 / 500 |", "| 1 | 500.0 / 500 | 500.0 / 500 |",
                                       "| all seeds | **495.0** / 300 | 500.0 / 500 |"]
    assert "**99.0%** of the state's mean return, 200,000 steps a side" in table


def test_the_results_table_gives_each_priors_judgement_and_a_dash_where_none_was_fitted() -> None:
    judged = {"fitted": {"implausible": 0.04, "recall": 0.85}, "normal": {"implausible": 0.09, "recall": 0.82}}
    assert make_docs.by_prior({"plausibility": judged}) == "**4%** / 9%"
    assert make_docs.by_prior({"plausibility": judged}, "recall") == "**85%** / 82%"
    assert make_docs.by_prior({"plausibility": {"normal": judged["normal"]}}, "recall") == "- / 82%"


def test_the_controller_table_gives_the_controller_the_random_policy_world_models_and_how_it_was_trained() -> None:
    from worldvae import compute

    evaluation = {"mean": 700.4, "std": 120.2, "worst": 210.0, "tracks": 100, "seeds": [1_000_000, 1_000_099],
                  "random": {"mean": -30.0, "std": 5.0, "worst": -41.0},
                  "world_models": {"code only, linear controller": {"mean": 632, "std": 251}}}
    training = {"method": "DAgger", "rounds": 8, "episodes": 8, "tracks": [0, 64], "seconds": 240.0,
                "machine": compute.machine(), "date": "2026-12-07"}
    table = make_docs.controller_table({"evaluation": evaluation, "training": training, "hidden": 0,
                                        "shipped_bytes": 2400})
    assert table.splitlines()[2:5] == [
        "| this controller (linear, `pretrained/carracing_controller.json`, 2 KB) | **700 ± 120** | 210 |",
        "| a uniformly random policy | -30 ± 5 | -41 |",
        "| World Models: code only, linear controller | 632 ± 251 | - |"]
    assert "tracks 1,000,000 .. 1,000,099 (100)" in table
    assert "(DAgger, 8 rounds of 8 tracks: tracks 0 .. 63) in 4.0 minutes on " in table and "2026-12-07." in table


def test_a_second_build_starts_the_comparisons_runs_afresh(tmp_path, monkeypatch) -> None:
    """compare_vae.py rightly refuses a folder holding a run: the part clears the folder of its own last build."""
    import compare_vae
    from tools.parts import compare

    (tmp_path / "compare").mkdir()
    (tmp_path / "compare" / "vae.pt").write_text("the last build's")
    found = []

    def comparison(argv: list[str]) -> None:
        out = Path(argv[argv.index("--out_dir") + 1])
        found.append(sorted(p.name for p in out.iterdir()) if out.exists() else [])
        out.mkdir(parents=True, exist_ok=True)
        for name in ("samples.png", "beta_sweep.png", "comparison.json", "comparison.md"):
            (out / name).write_text("{}")

    monkeypatch.setattr(compare_vae, "main", comparison)
    monkeypatch.setattr(compare, "DOCS", tmp_path / "docs")
    (tmp_path / "docs").mkdir()
    assert compare.measure(tmp_path, {})["table"] == "{}"
    assert found == [[]]
