"""The project installs as distributions, not through PYTHONPATH: the folders at the root are
the import names, so nothing else installed may provide the same names."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVING_PY = ROOT / ".venv-serving" / "bin" / "python"


def _top_level_names(pyproject: Path) -> set[str]:
    table = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]
    return {name.split(".")[0] for name in table.get("packages", [])} | set(table.get("py-modules", []))


def test_no_other_installed_distribution_provides_our_import_names():
    owners = packages_distributions()
    ours = _top_level_names(ROOT / "pyproject.toml")
    assert {"assets", "resources", "sensors", "seldon", "definitions", "driftline"} <= ours
    clashes = {name: owners[name] for name in ours if set(owners.get(name, ["driftline"])) != {"driftline"}}
    assert not clashes, f"other distributions provide driftline's import names: {clashes}"


@pytest.mark.skipif(not SERVING_PY.exists(), reason=".venv-serving is missing: run `make setup`")
def test_serving_environment_has_the_serving_distribution_only():
    code = (
        "import json, importlib.metadata as m; d = m.packages_distributions();"
        "print(json.dumps({k: d.get(k, []) for k in ('seldon', 'driftline', 'assets', 'resources', 'definitions')}))"
    )
    owners = json.loads(
        subprocess.run([str(SERVING_PY), "-c", code], cwd="/", capture_output=True, text=True, check=True).stdout
    )
    assert owners == {
        "seldon": ["driftline-serving"],
        "driftline": ["driftline-serving"],
        "assets": [],
        "resources": [],
        "definitions": [],
    }


def test_installed_code_imports_from_outside_the_checkout():
    """No PYTHONPATH and no working directory on sys.path: the editable install resolves it."""
    out = subprocess.run(
        [sys.executable, "-c", "import definitions, driftline.spec; print(definitions.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    ).stdout
    assert Path(out.strip()) == ROOT / "definitions.py"


def test_no_pythonpath_in_the_setup_the_workspace_or_the_runtimes():
    for path in (
        "Makefile",
        "workspace.yaml",
        "pyproject.toml",
        "seldon/runtime.py",
        "resources/seldon_target.py",
        "deployment/Dockerfile.user-code",
        "deployment/Dockerfile.serving",
    ):
        assert "PYTHONPATH" not in (ROOT / path).read_text(), path
