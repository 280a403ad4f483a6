"""The README is what users follow: its commands are CI's, its tables list every constant."""

from __future__ import annotations

import pytest
from conftest import REPO

import cli
import sample_vae
import train_vae

README = (REPO / "README.md").read_text()


def test_ci_runs_exactly_the_readme_install_and_test_commands() -> None:
    ci = [line for line in (REPO / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    install, test = ci[-2], ci[-1]
    assert (install, test) == ("pip install -r requirements.txt", "python -m pytest -q")
    assert f"\n{install}\n" in README and f"\n{test}\n" in README


@pytest.mark.parametrize("module", [train_vae, sample_vae])
def test_readme_tables_list_every_constant(module) -> None:
    for name in vars(cli.defaults(module)):
        assert f"| `{name.upper()}` |" in README, f"{module.__name__}.{name.upper()} is missing from the README"
