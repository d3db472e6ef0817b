"""One home per setting: every DRIFTLINE_* variable is declared in driftline/settings.py, listed
with the same default in the README's configuration table, and read by no other library module."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import dagster as dg
import pytest

from driftline import settings
from resources.synthetic.config import DEFAULT_WORLD

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ["assets", "resources", "sensors", "ml", "monitoring", "deployment", "driftline", "seldon", "definitions.py"]
SETTINGS_MODULE = ROOT / "driftline" / "settings.py"
NAME = re.compile(r"DRIFTLINE_[A-Z0-9_]+")  # one ending in "_" is a prefix in prose (DRIFTLINE_SYNTH_*)
SKIPPED_DIRS = {"data", "node_modules", "build", "__pycache__"}


def readme_table() -> dict[str, str]:
    """variable -> default cell of the README's "## Configuration" table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`DRIFTLINE_"):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def documented_default(setting: settings.Setting) -> str:
    if setting.name in settings.WORLD_FIELDS:
        value = getattr(DEFAULT_WORLD, settings.WORLD_FIELDS[setting.name][0])
        return "unset" if value is None else f"`{value}` (WorldConfig)"
    return "unset" if setting.default is None else f"`{setting.default}`"


def test_readme_lists_every_setting_with_its_default():
    table = readme_table()
    assert sorted(table) == sorted(settings.SETTINGS)
    assert {n: table[n] for n in table} == {n: documented_default(s) for n, s in settings.SETTINGS.items()}


def _repo_files():
    suffixes = (".py", ".yaml", ".yml", ".md", ".toml", ".sh", ".txt", ".cfg", ".ini")
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS]
        for name in files:
            path = Path(folder, name)
            if (name.endswith(suffixes) or name == "Makefile" or name.startswith("Dockerfile")) and path != Path(
                __file__
            ).resolve():  # this file names made-up variables
                yield path


def test_every_variable_named_in_the_repository_is_declared():
    """Helm values, manifests, docs and code name only declared variables (prefixes such as
    `DRIFTLINE_SYNTH_*` in prose excepted)."""
    named = {}
    for path in _repo_files():
        for name in NAME.findall(path.read_text(errors="ignore")):
            if not name.endswith("_"):
                named.setdefault(name, str(path.relative_to(ROOT)))
    undeclared = {n: where for n, where in named.items() if n not in settings.SETTINGS}
    assert not undeclared
    assert named.keys() >= {"DRIFTLINE_ENV", "DRIFTLINE_LAKE_URL"}  # the scan sees the Helm values and code


def _environment_reads(tree: ast.AST):
    """(line, key) of every os.environ / os.getenv read; key None when it is not a literal."""

    def is_environ(node) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
            isinstance(node, ast.Name) and node.id == "environ"
        )

    for node in ast.walk(tree):
        key = ...
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if (node.func.attr in ("get", "pop") and is_environ(node.func.value)) or node.func.attr == "getenv":
                key = node.args[0] if node.args else None
        elif isinstance(node, ast.Subscript) and is_environ(node.value) and isinstance(node.ctx, ast.Load):
            key = node.slice
        if key is ...:
            continue
        assert isinstance(node, ast.expr)  # a Call or a Subscript: the branches above set `key`
        yield node.lineno, key.value if isinstance(key, ast.Constant) else None


def test_no_library_module_reads_driftline_variables_itself():
    probe = ast.parse(
        "import os\nos.environ.get('DRIFTLINE_X')\nos.getenv(name)\nos.environ['DRIFTLINE_Y']\n"
        "os.environ['DRIFTLINE_Z'] = '1'\nenv = {**os.environ}"
    )
    assert sorted(str(key or "") for _, key in _environment_reads(probe)) == ["", "DRIFTLINE_X", "DRIFTLINE_Y"]
    offenders = []
    for entry in LIBRARY:
        base = ROOT / entry
        for path in [base] if base.is_file() else sorted(base.rglob("*.py")):
            if path == SETTINGS_MODULE:
                continue
            tree = ast.parse(path.read_text(), str(path))
            for line, key in _environment_reads(tree):
                if key is None or str(key).startswith("DRIFTLINE_"):
                    offenders.append(f"{path.relative_to(ROOT)}:{line} reads {key or 'a computed name'}")
    assert not offenders, "read DRIFTLINE_* through driftline.settings:\n" + "\n".join(offenders)


def test_load_reads_at_call_time_with_profile_defaults():
    local = settings.load({})
    assert (local.env, local.data_dir, local.start_date, local.sensor_interval_s, local.automation) == (
        "local",
        "data",
        "2026-10-01",
        30,
        True,
    )
    k8s = settings.load({"DRIFTLINE_ENV": "k8s", "DRIFTLINE_AUTOMATION": "off", "DRIFTLINE_SYNTH_USERS": "40"})
    assert (k8s.data_dir, k8s.mlflow_artifacts, k8s.automation, k8s.synthetic_world) == (
        "/data",
        "/data/mlartifacts",
        False,
        {"n_users": 40},
    )
    assert local.ingress_url != k8s.ingress_url
    with pytest.raises(ValueError, match="DRIFTLINE_ENV"):
        settings.load({"DRIFTLINE_ENV": "prod"})
    with pytest.raises(KeyError):
        settings.get("DRIFTLINE_" + "NOT_DECLARED")


def test_secrets_reach_resources_as_env_vars(monkeypatch):
    monkeypatch.setenv("DRIFTLINE_REDIS", "redis:6379,password=pw")
    value = settings.secret("DRIFTLINE_REDIS")
    assert isinstance(value, dg.EnvVar) and value == "DRIFTLINE_REDIS"
    assert settings.resolved(value) == "redis:6379,password=pw"
    assert settings.secret("DRIFTLINE_REDIS", {"DRIFTLINE_REDIS": "r:1"}) == "r:1"  # explicit mapping: plain
    monkeypatch.delenv("DRIFTLINE_INGRESS_ADMIN_TOKEN", raising=False)
    assert settings.secret("DRIFTLINE_INGRESS_ADMIN_TOKEN") is None
    with pytest.raises(ValueError):
        settings.secret("DRIFTLINE_START_DATE")


def test_synthetic_world_defaults_live_in_world_config(monkeypatch):
    from resources import SyntheticEventSource, configured_event_source

    for name in settings.WORLD_FIELDS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DRIFTLINE_EVENT_SOURCE", raising=False)
    assert configured_event_source().world_config() == DEFAULT_WORLD == SyntheticEventSource().world_config()
    monkeypatch.setenv("DRIFTLINE_SYNTH_FRAUD_RATE", "0.01")
    assert configured_event_source().world_config().fraud_rate == 0.01
