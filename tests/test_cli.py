"""The `driftline` command: help everywhere, tokens the ingress accepts, the endpoint of the
deployment last applied under the data dir."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from driftline import cli
from seldon import manifest as mf
from seldon.auth import Authenticator

ROOT = Path(__file__).resolve().parents[1]
SECRET = "cli-test-secret-long-enough-for-hs256!"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTLINE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DRIFTLINE_INGRESS_JWT_SECRET", raising=False)
    monkeypatch.delenv("DRIFTLINE_INGRESS_URL", raising=False)
    return tmp_path


def test_help_of_the_command_runs_in_a_fresh_process():
    out = subprocess.run(
        [sys.executable, "-m", "driftline.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert all(c in out.stdout for c in ("token", "endpoint", "demo", "dev"))


@pytest.mark.parametrize("command", ["token", "endpoint", "demo", "dev"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    assert "usage: driftline " + command in capsys.readouterr().out


def test_token_decodes_with_the_env_secret_and_carries_the_scope(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("DRIFTLINE_INGRESS_JWT_SECRET", SECRET)
    assert cli.main(["token", "--scope", "admin", "--subject", "ops", "--ttl-s", "60"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["scope"].split() == ["admin"] and claims["sub"] == "ops"
    assert claims["exp"] - claims["iat"] == 60
    assert Authenticator(hs256_secret=SECRET).authenticate(f"Bearer {token}", "admin").subject == "ops"


def test_token_uses_the_data_dirs_secret_and_defaults_to_predict(data_dir, capsys):
    (data_dir / "jwt.secret").write_text(SECRET + "\n")
    assert cli.main(["token"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["scope"] == "predict"


def test_token_without_any_secret_says_where_one_comes_from(data_dir, capsys):
    assert cli.main(["token"]) == 1
    err = capsys.readouterr().err
    assert "DRIFTLINE_INGRESS_JWT_SECRET" in err and str(data_dir / "jwt.secret") in err


def test_endpoint_prints_the_url_and_a_curl_example_for_the_applied_manifest(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("DRIFTLINE_INGRESS_URL", "http://127.0.0.1:18080")
    (data_dir / "jwt.secret").write_text(SECRET)
    predictors = [
        mf.Predictor("main", "driftline-fraud", "3", str(data_dir / "m3"), traffic=90),
        mf.Predictor("canary", "driftline-fraud", "4", str(data_dir / "m4"), traffic=10),
    ]
    mf.write(mf.render("payments", "risk", predictors, image="x"), data_dir / "serving" / "seldondeployment.yaml")
    assert cli.main(["endpoint"]) == 0
    out = capsys.readouterr().out
    url = "http://127.0.0.1:18080/seldon/risk/payments/api/v1.0/predictions"
    assert f"ingress:     {url}" in out
    assert "main v3 90 %" in out and "canary v4 10 %" in out
    curl = shlex.split(out[out.index("curl ") :].replace("\\\n", " "))
    assert curl[:3] == ["curl", "-s", url]
    token = curl[curl.index("-H") + 1].removeprefix("Authorization: Bearer ")
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["scope"] == "predict"
    assert '"jsonData"' in curl[curl.index("-d") + 1]


def test_endpoint_before_any_deployment_names_the_targets_defaults(data_dir, capsys):
    assert cli.main(["endpoint"]) == 0
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8080/seldon/default/fraud/api/v1.0/predictions" in out
    assert "no manifest applied yet" in out and "$(driftline token --scope predict)" in out
