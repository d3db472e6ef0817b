"""The `driftline` command: what people do by hand with a checkout.

    driftline token [--scope predict] [--subject NAME] [--ttl-s 3600]
    driftline endpoint [--scope predict] [--ttl-s 3600] [--manifest PATH]
    driftline demo [--profile full|ci] [--scenario covariate|concept] [--verbose]   (make demo)
    driftline dev [--host 127.0.0.1] [--port 3000]                        (make dev)
    driftline stream setup|publish|sink|dead-letters                      (make stream)

Tokens are HS256 JWTs signed with the ingress's secret: DRIFTLINE_INGRESS_JWT_SECRET, else the
data dir's `jwt.secret` (DRIFTLINE_DATA_DIR, default data/ in the checkout), which `driftline
demo` and `driftline dev` create and hand to the ingress.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from pathlib import Path

from driftline import demo, dev

DEFAULT_TTL_S = 3600
KNOWN_SCOPES = "predict (prediction API), admin (the ingress's /admin/*: weights, metrics)"


def data_dir() -> Path:
    """DRIFTLINE_DATA_DIR, else the checkout's data/ (where `make demo` and `make dev` keep state)."""
    from driftline import settings

    return Path(settings.get("DRIFTLINE_DATA_DIR") or demo.ROOT / "data").resolve()


def _secret() -> str | None:
    from driftline.jwt_secret import ingress_secret

    return ingress_secret(data_dir(), create=False)


def _no_secret_message() -> str:
    return (
        f"no ingress secret: set DRIFTLINE_INGRESS_JWT_SECRET, or run `driftline dev` / `driftline demo`, "
        f"which create {data_dir() / 'jwt.secret'}"
    )


def mint(scopes: list[str] | None, subject: str, ttl_s: int) -> str | None:
    """A token for `scopes` (default predict) signed with the ingress's secret; None without one."""
    from seldon.auth import PREDICT, mint_token

    secret = _secret()
    if secret is None:
        return None
    return mint_token(secret, scopes=" ".join(scopes or [PREDICT]), subject=subject, ttl_s=ttl_s)


def cmd_token(args: argparse.Namespace) -> int:
    token = mint(args.scope, args.subject, args.ttl_s)
    if token is None:
        print(_no_secret_message(), file=sys.stderr)
        return 1
    print(token)
    return 0


def current_deployment(manifest_path: Path | None = None) -> dict:
    """Where the current deployment answers: the ingress URL of the local SeldonTarget and the
    namespace and name of the last applied manifest (the target's own when none was applied)."""
    from driftline import settings
    from resources.seldon_target import SeldonTarget
    from seldon import manifest as mf

    target = SeldonTarget(serving_dir=str(data_dir() / "serving"), ingress_url=settings.load().ingress_url)
    path = Path(manifest_path) if manifest_path else target.manifest_path
    out = {
        "ingress_url": target.ingress_url,
        "namespace": target.namespace,
        "deployment": target.deployment_name,
        "manifest": str(path),
        "predictors": None,
    }
    if path.exists():
        manifest = mf.load(path)
        meta = manifest.get("metadata", {})
        out |= {
            "namespace": meta.get("namespace", out["namespace"]),
            "deployment": meta.get("name", out["deployment"]),
            "predictors": mf.summary(manifest),
        }
    return out


def _describe(predictors: dict | None) -> str:
    if predictors is None:
        return "no manifest applied yet: materialize seldon_deployment (or run `driftline demo`)"
    return ", ".join(
        f"{name} v{p['version']} {'shadow' if p['shadow'] else str(p['traffic']) + ' %'}"
        for name, p in predictors.items()
    )


def example_request() -> dict:
    """A raw transaction as a card terminal sends it (`jsonData`); the predictor adds the features."""
    from seldon.examples import example_transaction

    now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    return {"jsonData": example_transaction(now.isoformat())}


def cmd_endpoint(args: argparse.Namespace) -> int:
    from driftline.traffic import predictions_url

    where = current_deployment(args.manifest)
    url = predictions_url(where["ingress_url"], where["namespace"], where["deployment"])
    token = mint(args.scope, args.subject, args.ttl_s)
    scopes = " ".join(args.scope or ["predict"])
    print(f"ingress:     {url}")
    print(f"deployment:  {where['namespace']}/{where['deployment']} ({_describe(where['predictors'])})")
    print(f"manifest:    {where['manifest']}")
    if token is None:
        print(f"token:       {_no_secret_message()}")
        bearer = f"$(driftline token --scope {shlex.quote(scopes)})"
    else:
        print(f"token:       scope {scopes!r}, valid {args.ttl_s} s (a new one: driftline token --scope ...)")
        bearer = token
    print()
    print(
        f'curl -s {shlex.quote(url)} \\\n  -H "Authorization: Bearer {bearer}" \\\n'
        f"  -H 'Content-Type: application/json' \\\n  -d {shlex.quote(json.dumps(example_request()))}"
    )
    return 0


def _add_token_options(parser: argparse.ArgumentParser, subject: str) -> None:
    parser.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help=f"a scope the token carries; repeat for several (default: predict). Known: {KNOWN_SCOPES}",
    )
    parser.add_argument("--subject", default=subject, help="the token's `sub` claim (default: %(default)s)")
    parser.add_argument(
        "--ttl-s", type=int, default=DEFAULT_TTL_S, help="seconds until the token expires (default: %(default)s)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    token = commands.add_parser(
        "token",
        help="print a JWT for the ingress (TOKEN=$(driftline token))",
        description="Print an HS256 JWT signed with the ingress's secret.",
    )
    _add_token_options(token, subject="cli")
    token.set_defaults(func=cmd_token)

    endpoint = commands.add_parser(
        "endpoint",
        help="print the ingress URL and a ready-to-paste curl example",
        description="Print the prediction URL of the current deployment (from the last "
        "applied SeldonDeployment manifest) and a curl example with a token.",
    )
    _add_token_options(endpoint, subject="cli")
    endpoint.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="a SeldonDeployment manifest (default: <data dir>/serving/seldondeployment.yaml)",
    )
    endpoint.set_defaults(func=cmd_endpoint)

    demo_cmd = commands.add_parser(
        "demo",
        help="run the closed loop end to end (make demo)",
        description=demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_arguments(demo_cmd)
    demo_cmd.set_defaults(func=demo.run)

    dev_cmd = commands.add_parser(
        "dev",
        help="the Dagster UI and daemon, the MLflow UI, the drift reports and the serving stack (make dev)",
        description=dev.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dev.add_arguments(dev_cmd)
    dev_cmd.set_defaults(func=dev.run)

    from streaming import cli as stream_cli

    stream_cmd = commands.add_parser(
        "stream",
        help="the broker path: set up streams, publish synthetic days, run the lake sink (make stream)",
        description=stream_cli.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stream_cli.add_arguments(stream_cmd)
    stream_cmd.set_defaults(func=stream_cli.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
