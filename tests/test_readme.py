"""The README is what users follow: its commands are CI's, its tables list every constant with its real default."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import REPO

import bench
import cli
import compare_vae
import encode_vae
import evaluate_vae
import make_docs
import sample_vae
import train_vae

README = (REPO / "README.md").read_text()
SCRIPTS = {"train_vae.py", "sample_vae.py", "evaluate_vae.py", "encode_vae.py", "compare_vae.py", "bench.py",
           "make_docs.py", "MyVAE.py"}


def test_ci_runs_exactly_the_readme_install_and_test_commands() -> None:
    ci = [line for line in (REPO / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    install, test = ci[-2], ci[-1]
    assert install == "pip install -r requirements.txt -r requirements-envs.txt"
    assert test == "python -m pytest -q -n auto"
    assert f"\n{install}\n" in README and f"\n{test}\n" in README


def readme_table(script: str) -> dict[str, str]:
    """The README's constants table for `script`: NAME -> the default as written."""
    match = re.search(rf"^`{re.escape(script)}`:\n\n\| constant \| default \| meaning \|\n\|.*\|\n((?:\|.*\|\n)+)",
                      README, re.M)
    assert match, f"the README has no constants table for {script}"
    return dict(re.findall(r"^\| `([A-Z_0-9]+)` \| `([^`]*)` \|", match.group(1), re.M))


@pytest.mark.parametrize("module", [train_vae, sample_vae, evaluate_vae, encode_vae, compare_vae, bench, make_docs])
def test_readme_tables_list_every_constant_with_its_real_default(module) -> None:
    table = readme_table(f"{module.__name__}.py")
    knobs = cli.knobs(module)
    assert list(table) == list(knobs), f"{module.__name__}: the README's rows differ from the constants"
    for name, knob in knobs.items():
        assert ast.literal_eval(table[name]) == knob.value, f"README says {name} = {table[name]}"


def _our_imports(path) -> set[str]:
    ours = {p.stem for p in REPO.glob("*.py")}
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {name for name in names if name in ours}


def test_imports_point_one_way_scripts_then_library_then_the_model() -> None:
    modules = {p.name: _our_imports(p) for p in REPO.glob("*.py")}
    scripts = {s.removesuffix(".py") for s in SCRIPTS - {"MyVAE.py"}}
    assert modules["MyVAE.py"] == set(), "the model file imports nothing of ours"
    for name, imports in modules.items():
        if name not in SCRIPTS:
            assert not imports & scripts, f"library {name} imports a script"
    orchestrators = {"compare_vae.py", "bench.py", "make_docs.py"}
    for name in SCRIPTS - orchestrators - {"MyVAE.py"}:
        assert not modules[name] & scripts, f"{name} imports a script"
    for name in orchestrators:  # a script that orchestrates runs may call another's main(argv), nothing else
        tree = ast.parse((REPO / name).read_text())
        imported = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.Import)
                    for alias in node.names} & scripts
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported:
                assert node.attr == "main", f"{name} uses {node.value.id}.{node.attr}"


def test_the_readme_constants_block_is_what_make_docs_writes() -> None:
    """So `python make_docs.py --tables_only` is all it takes to fix this test after changing a constant."""
    assert make_docs.constants_tables() in README


def test_make_docs_replaces_only_its_marked_blocks() -> None:
    text = "intro\n<!-- results: old; do not edit by hand -->\n| a | 1 |\n<!-- results end -->\noutro\n"
    new = make_docs.replace_block(text, "results", "| a | 2 |", "by a test")
    assert new == "intro\n<!-- results: by a test; do not edit by hand -->\n| a | 2 |\n<!-- results end -->\noutro\n"
    with pytest.raises(cli.UserError, match="no `<!-- bench: ... -->`"):
        make_docs.replace_block(text, "bench", "x", "y")
