"""Bound values in SealedSecret and ExternalSecret templates, opened by the controller on the real
kube-apiserver: it asks for a token of the account the value names (TokenRequest, with the chart's
``serviceaccounts/token`` rule), logs in as it at a real ``kustos server`` (TokenReview), and writes the
plaintext into the Secret; a value bound to another namespace's account is refused."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from kustos.client import KustosClient
from kustos.crypto.sealing import load_certificates
from kustos.gitops.sealing import SealFormat, parse_secret, seal_secret
from kustos.sensitive import Sensitive
from tests.support.chart import CONTROLLER_ACCOUNT, RELEASE_NAMESPACE
from tests.support.kube import ControlPlane
from tests.support.kubeauth import AUDIENCE, configure_kubernetes_auth, write_role
from tests.support.server import RunningServer, start_server

ROLE = "kustos-controller-bound"


def _decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, control_plane: ControlPlane
) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("operator-bound")) as running:
        configure_kubernetes_auth(control_plane, running.addr, running.root_token)
        yield running


@pytest.fixture(scope="module")
def token_rule(control_plane: ControlPlane) -> None:
    """The chart's rule for bound values (rendered with ``boundRole`` set), for the controller's account."""
    import importlib.util

    from tests.support.chart import ROOT

    spec = importlib.util.spec_from_file_location("kustos_render", ROOT / "deploy/helm/render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    values = yaml.safe_load((ROOT / "deploy/helm/kustos/values.yaml").read_text())
    values["controller"]["kustos"]["boundRole"] = ROLE
    docs = [
        d
        for d in yaml.safe_load_all(
            module.render_chart(overrides={"controller": values["controller"]})
        )
        if d
    ]
    [role] = [
        d
        for d in docs
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "kustos-controller"
    ]
    rules = [r for r in role["rules"] if "serviceaccounts/token" in r.get("resources", [])]
    assert rules == [
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}
    ]
    control_plane.apply(
        [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "kustos-controller-bound-test"}, "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "kustos-controller-bound-test"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": "kustos-controller-bound-test"},
             "subjects": [{"kind": "ServiceAccount", "name": CONTROLLER_ACCOUNT,
                           "namespace": RELEASE_NAMESPACE}]},
        ]
    )  # fmt: skip


def _options(server: RunningServer) -> dict[str, Any]:
    return {
        "kustos_addr": server.addr,
        "kustos_token": Sensitive(server.root_token),
        "reloader": False,
        "bound_role": ROLE,
        "bound_audience": AUDIENCE,
    }


def _sealed(
    server: RunningServer, ns: str, template_data: dict[str, str], *, name: str = "db"
) -> dict[str, Any]:
    certificates = load_certificates(httpx.get(f"{server.addr}/v1/cert.pem", timeout=10).content)
    manifest = parse_secret({"apiVersion": "v1", "kind": "Secret",
                             "metadata": {"name": name, "namespace": ns},
                             "stringData": {"user": "app"}})  # fmt: skip
    [sealed] = seal_secret(
        manifest,
        certificates=certificates,
        now=datetime.datetime.now(tz=datetime.UTC),
        fmt=SealFormat.bitnami,
    )
    sealed["spec"].setdefault("template", {})["data"] = template_data
    return sealed


async def test_bound_template_values_open_for_their_own_namespace_only(
    api, run_operator, wait, server: RunningServer, control_plane: ControlPlane, token_rule: None
) -> None:
    other = api.namespace("elsewhere")
    control_plane.ensure_service_account(api.ns, "api")
    control_plane.ensure_service_account(other, "api")
    write_role(
        server.addr, server.root_token, ROLE, namespaces=[api.ns, other], service_accounts=["api"]
    )
    with KustosClient(server.addr, server.root_token) as root:
        mine = root.bound.encrypt(b"sealed-bound", namespace=api.ns, service_account="api")
        for_es = root.bound.encrypt(b"es-bound", namespace=api.ns, service_account="api")
        theirs = root.bound.encrypt(b"not-here", namespace=other, service_account="api")
        root.kv_v2.create_or_update_secret("bound/es", {"user": "es-user"}, mount_point="secret")
    await api.create("sealedsecrets", _sealed(server, api.ns, {"password": mine["ciphertext"]}))
    stolen = _sealed(server, api.ns, {"password": theirs["ciphertext"]}, name="stolen")
    await api.create("sealedsecrets", stolen)
    await api.create("secrets", {"apiVersion": "v1", "kind": "Secret",
                                 "metadata": {"name": "kustos-token", "namespace": api.ns},
                                 "data": {"token": base64.b64encode(server.root_token.encode()).decode()}})  # fmt: skip
    await api.create("secretstores", {"apiVersion": "kustos.io/v1", "kind": "SecretStore",
                                      "metadata": {"name": "kustos", "namespace": api.ns},
                                      "spec": {"provider": {"kustos": {"server": server.addr,
                                               "auth": {"tokenSecretRef": {"name": "kustos-token", "key": "token"}}}}}})  # fmt: skip
    await api.create("externalsecrets", {"apiVersion": "kustos.io/v1", "kind": "ExternalSecret",
                                         "metadata": {"name": "es", "namespace": api.ns},
                                         "spec": {"secretStoreRef": {"name": "kustos"}, "refreshInterval": "1h",
                                                  "data": [{"secretKey": "user", "remoteRef": {"key": "bound/es", "property": "user"}}],
                                                  "target": {"template": {"mergePolicy": "Merge",
                                                             "data": {"password": for_es["ciphertext"]}}}}})  # fmt: skip
    async with run_operator(**_options(server)):

        async def sealed_opened() -> bool:
            data = _decoded(await api.get("v1", "secrets", api.ns, "db"))
            return data == {"user": b"app", "password": b"sealed-bound"}

        await wait(sealed_opened, what="the SealedSecret's bound value opened", timeout=30)

        async def es_opened() -> bool:
            data = _decoded(await api.get("v1", "secrets", api.ns, "es"))
            return data == {"user": b"es-user", "password": b"es-bound"}

        await wait(es_opened, what="the ExternalSecret's bound value opened", timeout=30)

        async def refused() -> bool:
            body = await api.get("bitnami.com/v1alpha1", "sealedsecrets", api.ns, "stolen")
            conditions = ((body or {}).get("status") or {}).get("conditions") or []
            return any(
                c["type"] == "Synced"
                and c["status"] == "False"
                and f"namespace {other}" in c.get("message", "")
                for c in conditions
            )

        await wait(refused, what="the other namespace's value refused", timeout=30)
        assert await api.get("v1", "secrets", api.ns, "stolen") is None
    for name in ("db", "es"):
        secret = await api.get("v1", "secrets", api.ns, name)
        assert b"kustos:bound" not in b"".join(_decoded(secret).values())


async def test_without_a_bound_role_the_controller_says_how(
    api, run_operator, wait, server: RunningServer
) -> None:
    with KustosClient(server.addr, server.root_token) as root:
        value = root.bound.encrypt(b"x", namespace=api.ns, service_account="api")["ciphertext"]
    await api.create("sealedsecrets", _sealed(server, api.ns, {"password": value}))
    options = {**_options(server), "bound_role": None}
    async with run_operator(**options):

        async def failed() -> bool:
            body = await api.get("bitnami.com/v1alpha1", "sealedsecrets", api.ns, "db")
            conditions = ((body or {}).get("status") or {}).get("conditions") or []
            return any("--bound-role" in c.get("message", "") for c in conditions)

        await wait(failed, what="a condition naming --bound-role", timeout=30)
        assert await api.get("v1", "secrets", api.ns, "db") is None


async def test_a_uid_pinned_value_stops_opening_once_its_account_is_recreated(
    api, run_operator, wait, server: RunningServer, control_plane: ControlPlane, token_rule: None
) -> None:
    control_plane.ensure_service_account(api.ns, "pinned")
    write_role(
        server.addr, server.root_token, ROLE, namespaces=[api.ns], service_accounts=["pinned"]
    )
    with KustosClient(server.addr, server.root_token) as root:
        pinned = root.bound.encrypt(
            b"pinned-bound", namespace=api.ns, service_account="pinned", bind_uid=True
        )
    value = pinned["ciphertext"]
    await api.create("sealedsecrets", _sealed(server, api.ns, {"password": value}))
    async with run_operator(**_options(server)):

        async def opened() -> bool:
            data = _decoded(await api.get("v1", "secrets", api.ns, "db"))
            return data == {"user": b"app", "password": b"pinned-bound"}

        await wait(opened, what="the pinned value opened", timeout=30)
        path = f"/api/v1/namespaces/{api.ns}/serviceaccounts/pinned"
        assert control_plane.request("DELETE", path).status_code == 200
        control_plane.ensure_service_account(api.ns, "pinned")  # same name, a new UID
        # the controller still holds a login of the old account; the value must not open with it
        await api.create(
            "sealedsecrets", _sealed(server, api.ns, {"password": value}, name="after")
        )

        async def refused() -> bool:
            body = await api.get("bitnami.com/v1alpha1", "sealedsecrets", api.ns, "after")
            conditions = ((body or {}).get("status") or {}).get("conditions") or []
            return any(
                c["type"] == "Synced"
                and c["status"] == "False"
                and "deleted and recreated" in c.get("message", "")
                for c in conditions
            )

        await wait(refused, what="the recreated account's value refused", timeout=60)
        assert await api.get("v1", "secrets", api.ns, "after") is None
