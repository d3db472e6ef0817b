"""The cluster tests' shared setup: the cluster (skipped with the reason where none is
reachable), one namespace per session holding deployment/k8s/rbac.yaml's accounts and Roles, and
kubeconfigs that authenticate as those accounts (testkit/cluster.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from deployment.k8s_config import LAUNCHER_SERVICE_ACCOUNT, RUN_SERVICE_ACCOUNT
from testkit import cluster as kc


@dataclass(frozen=True)
class Namespace:
    cluster: kc.Cluster
    name: str
    rbac: list[str]
    kubeconfigs: dict[str, Path]  # service account -> a kubeconfig authenticating as it


@pytest.fixture(scope="session")
def cluster() -> kc.Cluster:
    found = kc.require()
    print(
        f"\nKubernetes {found.version} at {found.kubeconfig}"
        + (" (started by the tests)" if found.started_here else "")
    )
    return found


@pytest.fixture(scope="session")
def namespace(cluster, tmp_path_factory):
    """rbac.yaml applied as it is (its namespace replaced) in a fresh namespace; deleted after."""
    name = kc.create_namespace(cluster)
    try:
        created = kc.apply_rbac(cluster, name)
        folder = tmp_path_factory.mktemp("kubeconfigs")
        kubeconfigs = {
            account: kc.service_account_kubeconfig(cluster, name, account, folder / f"{account}.yaml")
            for account in (LAUNCHER_SERVICE_ACCOUNT, RUN_SERVICE_ACCOUNT)
        }
        yield Namespace(cluster, name, created, kubeconfigs)
    finally:
        kc.delete_namespace(cluster, name)
