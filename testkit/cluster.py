"""A Kubernetes API server for the cluster tests, and what they set up on it.

The cluster is whatever `KUBECONFIG` points at (kind, minikube, a cloud cluster) when it answers;
else, on the project's machines, the single-node cluster of `../shared/k8s/up.sh`, started here in
the tests' setup (and stopped at the end of the session if it was started here). Elsewhere the
tests skip with the reason. Images reach the node with `../shared/k8s/load-image.sh` where that
folder exists; on another cluster load them yourself first (`kind load docker-image IMAGE`,
`minikube image load IMAGE`) or push them where the node pulls from.

Everything a test creates lives in one namespace made for the session, deleted afterwards (the
Seldon CRD, cluster-wide, stays: it is the upstream one and holds no state of the tests).
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.shared import shared_dir

ROOT = Path(__file__).resolve().parent.parent
SHARED = shared_dir()
SHARED_K8S = SHARED / "k8s"
SELDON_SCHEMA = SHARED / "schemas" / "seldondeployment-v1.openapi.json"
RBAC = ROOT / "deployment" / "k8s" / "rbac.yaml"
SELDON_GROUP, SELDON_PLURAL = "machinelearning.seldon.io", "seldondeployments"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str  # cluster-admin (or enough to create namespaces, RBAC and the CRD)
    started_here: bool
    version: str

    def client(self, kubeconfig: str | None = None) -> Any:
        """An ApiClient for this cluster: the admin's, or a service account's kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=kubeconfig or self.kubeconfig)

    def api(self, name: str, kubeconfig: str | None = None) -> Any:
        """`kubernetes.client.<name>` (CoreV1Api, BatchV1Api, ...) on this cluster, untyped: the
        client's generated methods return unions with their async variant."""
        from kubernetes import client

        return getattr(client, name)(self.client(kubeconfig))


def _answers(kubeconfig: str) -> str | None:
    """The server's version when the kubeconfig reaches an API server, else None."""
    try:
        from kubernetes import client, config

        api: Any = config.new_client_from_config(config_file=kubeconfig)
        api.configuration.retries = 0
        version: Any = client.VersionApi(api)
        info = version.get_code(_request_timeout=10)
        return str(info.git_version)
    except Exception:  # noqa: BLE001  # any failure means: no usable cluster there
        return None


@functools.cache
def find() -> Cluster | str:
    """The cluster, or why there is none."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        version = _answers(kubeconfig.split(os.pathsep)[0])
        if version:
            return Cluster(kubeconfig.split(os.pathsep)[0], started_here=False, version=version)
        return f"KUBECONFIG={kubeconfig} does not answer"
    up = SHARED_K8S / "up.sh"
    if not up.exists():
        return f"no KUBECONFIG and no {up} to start a cluster with"
    # already running (its README: STATE_DIR is $K8S_STATE_DIR, default /tmp/driftline-k8s): use
    # it and leave it running; only a cluster started here is stopped at the end of the session
    running = Path(os.environ.get("K8S_STATE_DIR") or "/tmp/driftline-k8s") / "kubeconfig"
    version = _answers(str(running)) if running.exists() else None
    if version:
        os.environ["KUBECONFIG"] = str(running)
        return Cluster(str(running), started_here=False, version=version)
    if os.geteuid() != 0:
        return f"{up} needs root"
    out = subprocess.run(["bash", str(up)], check=False, capture_output=True, text=True, timeout=600)
    exports = [line for line in out.stdout.splitlines() if line.startswith("export KUBECONFIG=")]
    if out.returncode != 0 or not exports:
        return f"{up} failed (rc {out.returncode}): {out.stderr[-800:]}"
    kubeconfig = exports[-1].split("=", 1)[1].strip()
    os.environ["KUBECONFIG"] = kubeconfig
    atexit.register(subprocess.run, ["bash", str(SHARED_K8S / "down.sh")], capture_output=True, timeout=300)
    version = _answers(kubeconfig)
    if not version:
        return f"{up} started a cluster whose API server does not answer at {kubeconfig}"
    return Cluster(kubeconfig, started_here=True, version=version)


def require() -> Cluster:
    found = find()
    if isinstance(found, str):
        pytest.skip(f"no Kubernetes cluster: {found}")
    return found


def node_is_this_machine(cluster: Cluster) -> str | None:
    """None when a node's address is one of this machine's (hostNetwork pods then share its
    loopback: PostgreSQL, Redis and the S3 server the tests start); else why not (kind's node
    is a container, minikube's a VM unless `--driver=none`)."""
    import socket

    nodes = cluster.api("CoreV1Api").list_node().items
    node_ips = {a.address for n in nodes for a in n.status.addresses or [] if a.type == "InternalIP"}
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=False)
    local = {field.split("/")[0] for line in out.stdout.splitlines() for field in line.split()[3:4]}
    local |= {socket.gethostbyname(socket.gethostname())}
    if node_ips & local:
        return None
    return (
        f"the node ({', '.join(sorted(node_ips))}) is not this machine: its hostNetwork pods cannot reach "
        "the PostgreSQL, Redis and S3 server on this machine's 127.0.0.1"
    )


@functools.cache
def load_image(image: str) -> str:
    """Makes a locally built image available to the node, once per session; returns how."""
    script = SHARED_K8S / "load-image.sh"
    if not script.exists():
        return f"{image}: expected on the node already (kind load docker-image / minikube image load / a registry)"
    started = time.monotonic()
    out = subprocess.run(["bash", str(script), image], check=False, capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(f"{script} {image} failed: {out.stderr[-2000:]}")
    how = f"{image} loaded into the node in {time.monotonic() - started:.0f} s"
    print(f"\n{how}")
    return how


# ------------------------------------------------------------------ namespace and RBAC
def create_namespace(cluster: Cluster, prefix: str = "driftline-ct") -> str:

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.api("CoreV1Api").create_namespace({"metadata": {"name": name}})
    return name


def delete_namespace(cluster: Cluster, name: str) -> None:

    try:
        cluster.api("CoreV1Api").delete_namespace(name, propagation_policy="Background")
    except Exception as err:  # noqa: BLE001  # cleanup: a namespace already gone is fine
        print(f"deleting namespace {name}: {err}")


def rbac_documents(namespace: str) -> list[dict]:
    """deployment/k8s/rbac.yaml with its namespace (`driftline`) replaced by the test's."""
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
    return docs


def apply_rbac(cluster: Cluster, namespace: str) -> list[str]:
    """Creates rbac.yaml's accounts, Roles and RoleBindings in `namespace`; returns their kinds/names."""
    core, rbac = cluster.api("CoreV1Api"), cluster.api("RbacAuthorizationV1Api")
    created = []
    for doc in rbac_documents(namespace):
        kind = doc["kind"]
        create = {
            "ServiceAccount": core.create_namespaced_service_account,
            "Role": rbac.create_namespaced_role,
            "RoleBinding": rbac.create_namespaced_role_binding,
        }[kind]
        create(namespace, doc)
        created.append(f"{kind}/{doc['metadata']['name']}")
    return created


def service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the service account (its token), for calls made from
    outside a pod (the host-side run launcher, the sensor's calls) under the account's Role."""

    core = cluster.api("CoreV1Api")
    token = None
    deadline = time.monotonic() + 60
    while token is None and time.monotonic() < deadline:
        sa = core.read_namespaced_service_account(account, namespace)
        for ref in sa.secrets or []:  # 1.20..1.23: the token controller makes a secret per account
            secret = core.read_namespaced_secret(ref.name, namespace)
            if secret.type == "kubernetes.io/service-account-token" and (secret.data or {}).get("token"):
                token = base64.b64decode(secret.data["token"]).decode()
        if token is None:
            token = _requested_token(core, namespace, account)
        if token is None:
            time.sleep(1)
    if token is None:
        raise RuntimeError(f"no token for service account {namespace}/{account}")
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": _absolute_ca(server["cluster"], Path(cluster.kubeconfig))}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "cluster", "user": account, "namespace": namespace}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _requested_token(core, namespace: str, account: str) -> str | None:
    """1.24+: no token secrets; ask the TokenRequest API (an hour is plenty for a test session)."""
    try:
        body = {"spec": {"expirationSeconds": 3600}}
        return core.create_namespaced_service_account_token(account, namespace, body).status.token
    except Exception:  # noqa: BLE001  # older servers: the secret shows up a moment later
        return None


def _absolute_ca(cluster_entry: dict, kubeconfig: Path) -> dict:
    entry = dict(cluster_entry)
    ca = entry.get("certificate-authority")
    if ca and not Path(ca).is_absolute():
        entry["certificate-authority"] = str((kubeconfig.parent / ca).resolve())
    return entry


def can_i(cluster: Cluster, kubeconfig: str, verb: str, resource: str, namespace: str, group: str = "") -> bool:
    """The API server's answer to `kubectl auth can-i` for whoever `kubeconfig` authenticates as."""

    review = {
        "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace}}
    }
    result = cluster.api("AuthorizationV1Api", kubeconfig).create_self_subject_access_review(review)
    return bool(result.status.allowed)


# ------------------------------------------------------------------ the Seldon CRD
def seldon_crd(schema_path: Path = SELDON_SCHEMA) -> dict:
    """Seldon Core 1.17.1's v1 CRD around the upstream `openAPIV3Schema` (the shared schema file,
    read where it lies, never copied): served and stored v1, the status subresource, as upstream."""
    schema = _structural(json.loads(schema_path.read_text()))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{SELDON_PLURAL}.{SELDON_GROUP}"},
        "spec": {
            "group": SELDON_GROUP,
            "names": {
                "kind": "SeldonDeployment",
                "listKind": "SeldonDeploymentList",
                "plural": SELDON_PLURAL,
                "singular": "seldondeployment",
                "shortNames": ["sdep"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def _structural(node: Any) -> Any:
    """The one change the API server needs: `graph.children` is `items: {}` upstream (the operator's
    base CRD), which apiextensions.k8s.io/v1 refuses ("must not be empty for specified array
    items"); Seldon's Helm chart unrolls it 10 levels deep instead. Here the nested graphs are kept
    as objects whose fields are preserved unchecked: what the JSON-Schema checks see as well."""
    if isinstance(node, dict):
        out = {k: _structural(v) for k, v in node.items()}
        if out.get("type") == "array" and out.get("items") == {}:
            out["items"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return out
    if isinstance(node, list):
        return [_structural(v) for v in node]
    return node


def install_seldon_crd(cluster: Cluster) -> str:
    """Creates the CRD unless the server has it; waits until it is Established."""
    from kubernetes.client.exceptions import ApiException

    if not SELDON_SCHEMA.exists():
        pytest.skip(f"Seldon's CRD schema is not here: {SELDON_SCHEMA}")
    api = cluster.api("ApiextensionsV1Api")
    name = f"{SELDON_PLURAL}.{SELDON_GROUP}"
    try:
        api.read_custom_resource_definition(name)
        how = "present"
    except ApiException as err:
        if err.status != 404:
            raise
        api.create_custom_resource_definition(seldon_crd())
        how = "created"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conditions = api.read_custom_resource_definition(name).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return how
        time.sleep(0.5)
    raise TimeoutError(f"CRD {name} not Established within 60 s")


# ------------------------------------------------------------------ objects the pods read
def config_map(cluster: Cluster, namespace: str, name: str, data: dict[str, str]) -> None:

    cluster.api("CoreV1Api").create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": data})


def secret(cluster: Cluster, namespace: str, name: str, data: dict[str, str]) -> None:

    cluster.api("CoreV1Api").create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})


def jobs(cluster: Cluster, namespace: str, run_id: str) -> list[Any]:
    """The Jobs of one Dagster run (run Job and step Jobs carry the run id label)."""

    batch = cluster.api("BatchV1Api")
    return list(batch.list_namespaced_job(namespace, label_selector=f"dagster/run-id={run_id}").items)


def finished_jobs(cluster: Cluster, namespace: str, run_id: str, timeout_s: float = 180) -> list[Any]:
    """The run's Jobs once each has completed or failed. Dagster records the run's end from
    inside its pod, before the process exits and Kubernetes marks the Job complete."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = jobs(cluster, namespace, run_id)
        if found and all(j.status.succeeded or j.status.failed for j in found):
            return found
        if time.monotonic() > deadline:
            return found  # the caller's assertions say which Job is still active
        time.sleep(2)


def pods(cluster: Cluster, namespace: str, run_id: str) -> list[Any]:

    core = cluster.api("CoreV1Api")
    return list(core.list_namespaced_pod(namespace, label_selector=f"dagster/run-id={run_id}").items)


def pod_logs(cluster: Cluster, namespace: str, run_id: str, tail: int = 60) -> str:
    """The tail of every pod of a run, for a failure's message."""

    core = cluster.api("CoreV1Api")
    out = []
    for pod in pods(cluster, namespace, run_id):
        try:
            log = core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=tail)
        except Exception as err:  # noqa: BLE001  # a pod not started has no log: say why
            log = f"<no log: {err}>"
        out.append(f"--- {pod.metadata.name} ({pod.status.phase})\n{log}")
    return "\n".join(out)
