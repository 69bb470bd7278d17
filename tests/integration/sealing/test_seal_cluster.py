"""``kustos seal`` finding its controller in the cluster, as kubeseal does, on a real kube-apiserver.

The API server's audit log shows what reached it: kubeseal's service-proxy
path (``/api/v1/namespaces/<ns>/services/http:<name>:<port>/proxy/v1/cert.pem``),
asked as the kubeconfig's user. No Service here has a selector, and no
Endpoints object holds an address, so the API server dials nothing (tests
may only send traffic to loopback). It answers by itself, and the CLI must
turn each answer into a clear error:

- a Service whose Endpoints list no address (what a cluster has while the
  controller's pod is not ready): 503 "no endpoints available for service";
- a Service without any Endpoints object (measured on v1.36: the proxy then
  answers 404 ``services "<name>" not found``, though the Service exists).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from kustos.cli.main import app
from tests.support.cli import cli_runner
from tests.support.kube import ControlPlane, require_assets

if TYPE_CHECKING:
    from tests.integration.sealing.conftest import KeyFiles

KUSTOS = str(Path(sys.executable).parent / "kustos")
NAMESPACE = "kustos"
SERVICE = "kustos-server"
CERT_PATH = f"/api/v1/namespaces/{NAMESPACE}/services/http:{SERVICE}:http/proxy/v1/cert.pem"
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources: [{group: "", resources: [services, services/proxy]}]
  - level: None
"""
SECRET_WITHOUT_NAMESPACE = """\
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2}
"""


class Cluster:
    """A control plane with an audit log, a selectorless Service and a least-privilege user."""

    def __init__(self, plane: ControlPlane, audit: Path, root: Path) -> None:
        self.plane = plane
        self.audit = audit
        self.root = root

    def events(self) -> list[dict[str, Any]]:
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]

    def wait_for(self, uri: str, user: str) -> dict[str, Any]:
        """The audit event of ``uri`` asked by ``user`` (the log is written as requests complete)."""
        for _ in range(100):
            for event in self.events():
                if event.get("requestURI") == uri and event["user"]["username"] == user:
                    return event
            time.sleep(0.1)
        seen = sorted({e.get("requestURI", "") for e in self.events()})
        raise AssertionError(f"no audit event for {uri} by {user}; seen: {seen}")


def _service(name: str, port_name: str) -> dict[str, Any]:
    """A Service with no selector: nothing creates endpoints for it, so nothing is ever dialled."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"ports": [{"name": port_name, "port": 8200, "protocol": "TCP"}]},
    }


def _no_addresses(name: str) -> dict[str, Any]:
    """Endpoints with no address at all (a controller whose pod is not ready): nothing to dial."""
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "subsets": [],
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    assets = require_assets()
    plane = ControlPlane(assets)
    audit = plane.root / "audit.log"
    policy = plane.root / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    plane.extra_apiserver_args += [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={audit}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
    ]
    try:
        plane.start()
    except RuntimeError as exc:
        plane.stop()
        pytest.fail(f"the control plane did not start: {exc}")
    try:
        plane.ensure_namespace(NAMESPACE)
        for name, port in ((SERVICE, "http"), ("kustos-tls", "https"), ("bare", "http")):
            plane.create("services", _service(name, port))
        for name in (SERVICE, "kustos-tls"):  # "bare" has no Endpoints object at all
            plane.create("endpoints", _no_addresses(name))
        plane.apply(
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": {"name": "sealer", "namespace": NAMESPACE},
                    "rules": [
                        {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
                        {
                            "apiGroups": [""],
                            "resources": ["services/proxy"],
                            "verbs": ["get", "create"],
                        },
                    ],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "sealer", "namespace": NAMESPACE},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": "sealer",
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "sealer"}
                    ],
                },
            ]
        )
        yield Cluster(plane, audit, tmp_path_factory.mktemp("seal-cluster"))
    finally:
        plane.stop()


def _kubeconfig(cluster: Cluster, user: str, *, namespace: str | None = None) -> Path:
    path = cluster.root / f"{user}-{uuid.uuid4().hex[:6]}.kubeconfig"
    return cluster.plane.user_kubeconfig(path, user, namespace=namespace)


def _environment(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KUSTOS_", "VAULT_", "SEALED_SECRETS_")) and k != "KUBECONFIG"
    }
    env["HOME"] = str(home)
    return env


def _seal_process(
    cluster: Cluster, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it."""
    return subprocess.run(
        [KUSTOS, "seal", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_environment(cluster.root),
        timeout=120,
        check=False,
    )


def _seal(
    cluster: Cluster, *args: str, stdin: str = "", home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The same command in-process (faster on a busy machine), with a clean environment."""
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("SEALED_SECRETS_",)) or k == "KUBECONFIG"
    }
    env["HOME"] = str(home or cluster.root)
    result = cli_runner().invoke(app, ["seal", *args], input=stdin, env=env)
    return subprocess.CompletedProcess(
        args=list(args), returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr
    )


def test_the_certificate_is_asked_on_kubeseals_proxy_path_with_the_kubeconfigs_user(
    cluster: Cluster,
) -> None:
    kubeconfig = _kubeconfig(cluster, "sealer")
    result = _seal_process(
        cluster,
        "--controller-namespace",
        NAMESPACE,
        "--controller-name",
        SERVICE,
        "--kubeconfig",
        str(kubeconfig),
        stdin=SECRET_WITHOUT_NAMESPACE.replace("{name: db}", "{name: db, namespace: app}"),
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    # the API server's own answer, made clear: no pod serves the Service
    assert (
        "cannot fetch the certificate: Service kustos/kustos-server has no ready endpoints"
        in result.stderr
    ), result.stderr
    assert "no endpoints available for service" in result.stderr
    assert "kubectl -n kustos get pods,endpoints" in result.stderr
    assert "Traceback" not in result.stderr
    # the request reached the API server on kubeseal's path, as the kubeconfig's user
    service = cluster.wait_for(f"/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}", "sealer")
    assert service["verb"] == "get" and service["responseStatus"]["code"] == 200
    proxied = cluster.wait_for(CERT_PATH, "sealer")
    assert proxied["verb"] == "get"
    assert proxied["objectRef"]["subresource"] == "proxy"
    assert proxied["objectRef"]["name"] == f"http:{SERVICE}:http"
    assert proxied["responseStatus"]["code"] == 503


def test_fetch_cert_and_validate_take_the_same_way(cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig = str(_kubeconfig(cluster, "sealer"))
    flags = ["--controller-namespace", NAMESPACE, "--controller-name", SERVICE]
    fetched = _seal(cluster, "--fetch-cert", *flags, "--kubeconfig", kubeconfig)
    assert fetched.returncode == 1 and "has no ready endpoints" in fetched.stderr
    sealed = tmp_path / "sealed.yaml"
    sealed.write_text(
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\n"
        "metadata: {name: db, namespace: app}\nspec: {encryptedData: {password: AgA=}}\n"
    )
    validated = _seal(cluster, "--validate", "-f", str(sealed), *flags, "--kubeconfig", kubeconfig)
    assert validated.returncode == 1
    assert (
        "cannot validate the SealedSecret: Service kustos/kustos-server has no ready endpoints"
        in (validated.stderr)
    )
    posted = cluster.wait_for(
        f"/api/v1/namespaces/{NAMESPACE}/services/http:{SERVICE}:http/proxy/v1/verify", "sealer"
    )
    assert posted["verb"] == "create" and posted["responseStatus"]["code"] == 503


def test_a_port_named_https_is_proxied_with_the_https_scheme(cluster: Cluster) -> None:
    kubeconfig = str(_kubeconfig(cluster, "sealer"))
    result = _seal(
        cluster,
        "--fetch-cert",
        "--controller-namespace",
        NAMESPACE,
        "--controller-name",
        "kustos-tls",
        "--kubeconfig",
        kubeconfig,
    )
    assert result.returncode == 1 and "Service kustos/kustos-tls has no ready endpoints" in (
        result.stderr
    )
    event = cluster.wait_for(
        f"/api/v1/namespaces/{NAMESPACE}/services/https:kustos-tls:https/proxy/v1/cert.pem",
        "sealer",
    )
    assert event["responseStatus"]["code"] == 503


def test_a_service_without_an_endpoints_object_is_the_same_clear_error(cluster: Cluster) -> None:
    result = _seal(
        cluster,
        "--fetch-cert",
        "--controller-namespace",
        NAMESPACE,
        "--controller-name",
        "bare",
        "--kubeconfig",
        str(_kubeconfig(cluster, "sealer")),
    )
    assert result.returncode == 1
    assert "Service kustos/bare has no ready endpoints" in result.stderr, result.stderr
    event = cluster.wait_for(
        f"/api/v1/namespaces/{NAMESPACE}/services/http:bare:http/proxy/v1/cert.pem", "sealer"
    )
    assert event["responseStatus"]["code"] == 404


def test_a_missing_service_and_missing_rights_are_clear_errors(cluster: Cluster) -> None:
    missing = _seal(
        cluster,
        "--fetch-cert",
        "--controller-namespace",
        NAMESPACE,
        "--controller-name",
        "nothing-here",
        "--kubeconfig",
        str(_kubeconfig(cluster, "sealer")),
    )
    assert missing.returncode == 1
    assert "there is no Service kustos/nothing-here" in missing.stderr
    assert "--controller-namespace and --controller-name" in missing.stderr
    # a user without RBAC on the Service: the API server's refusal, said as such
    stranger = _seal(
        cluster,
        "--fetch-cert",
        "--controller-namespace",
        NAMESPACE,
        "--controller-name",
        SERVICE,
        "--kubeconfig",
        str(_kubeconfig(cluster, "stranger")),
    )
    assert stranger.returncode == 1
    assert "forbidden" in stranger.stderr.lower() and "stranger" in stranger.stderr
    assert "Traceback" not in stranger.stderr


def test_an_address_flag_and_a_controller_name_are_a_usage_error(cluster: Cluster) -> None:
    result = _seal(
        cluster,
        "--fetch-cert",
        "--controller-url",
        "http://127.0.0.1:1",
        "--controller-name",
        SERVICE,
    )
    assert result.returncode == 2 and "give one or the other" in result.stderr


def test_a_secret_without_namespace_is_sealed_for_the_contexts_namespace(
    cluster: Cluster, prod_keys: KeyFiles, tmp_path: Path
) -> None:
    """kubeseal's rule, offline (--cert): only the kubeconfig's context is read, nothing is sent."""
    kubeconfig = _kubeconfig(cluster, "sealer", namespace="team-a")
    before = len(cluster.events())
    out = _seal(
        cluster,
        "--cert",
        str(prod_keys.cert),
        "--kubeconfig",
        str(kubeconfig),
        "-o",
        "yaml",
        stdin=SECRET_WITHOUT_NAMESPACE,
    )
    assert out.returncode == 0, out.stderr
    sealed = yaml.safe_load(out.stdout)
    assert sealed["metadata"]["namespace"] == "team-a"
    assert sealed["spec"]["template"]["metadata"]["namespace"] == "team-a"
    opened = _open(prod_keys, sealed["spec"]["encryptedData"]["password"], b"team-a/db")
    assert opened == b"hunter2"
    # a context without a namespace means "default", as for kubectl
    plain = _seal(
        cluster,
        "--cert",
        str(prod_keys.cert),
        "--kubeconfig",
        str(_kubeconfig(cluster, "sealer")),
        "-o",
        "yaml",
        stdin=SECRET_WITHOUT_NAMESPACE,
    )
    assert yaml.safe_load(plain.stdout)["metadata"]["namespace"] == "default"
    # ~/.kube/config is found like kubectl finds it; --namespace still wins
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_bytes(kubeconfig.read_bytes())
    from_home = _seal(
        cluster, "--cert", str(prod_keys.cert), stdin=SECRET_WITHOUT_NAMESPACE, home=home
    )
    assert json.loads(from_home.stdout)["metadata"]["namespace"] == "team-a"
    override = _seal(
        cluster,
        "--cert",
        str(prod_keys.cert),
        "-n",
        "other",
        stdin=SECRET_WITHOUT_NAMESPACE,
        home=home,
    )
    assert json.loads(override.stdout)["metadata"]["namespace"] == "other"
    # a cluster-wide Secret needs no namespace, and none is added
    wide = _seal(
        cluster,
        "--cert",
        str(prod_keys.cert),
        "--scope",
        "cluster-wide",
        stdin=SECRET_WITHOUT_NAMESPACE,
        home=home,
    )
    assert "namespace" not in json.loads(wide.stdout)["metadata"]
    # --raw takes the context's namespace too
    raw = _seal(
        cluster, "--raw", "--name", "db", "--cert", str(prod_keys.cert), stdin="v", home=home
    )
    assert _open(prod_keys, raw.stdout.strip(), b"team-a/db") == b"v"
    # a --context that does not exist is named
    bad = _seal(
        cluster,
        "--cert",
        str(prod_keys.cert),
        "--kubeconfig",
        str(kubeconfig),
        "--context",
        "nope",
        stdin=SECRET_WITHOUT_NAMESPACE,
    )
    assert (
        bad.returncode == 1 and "context 'nope'" in bad.stderr and "no such context" in bad.stderr
    )
    assert len(cluster.events()) == before, "sealing offline must not call the API server"


def _open(keys: KeyFiles, value: str, label: bytes) -> bytes:
    from tests.integration.sealing.test_seal_cli import independent_open

    return independent_open(keys.key.read_bytes(), value, label)


def test_several_files_and_multi_document_input_are_all_sealed(
    cluster: Cluster, prod_keys: KeyFiles, tmp_path: Path
) -> None:
    """kubeseal takes one Secret; ``kustos seal`` takes every Secret of every ``-f`` file."""
    first = tmp_path / "first.yaml"
    first.write_text(
        SECRET_WITHOUT_NAMESPACE
        + "---\n"
        + SECRET_WITHOUT_NAMESPACE.replace("{name: db}", "{name: api, namespace: prod}")
    )
    second = tmp_path / "second.json"
    second.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": "cache", "namespace": "prod"},
                        "stringData": {"password": "swordfish"},
                    }
                ],
            }
        )
    )
    out = _seal(
        cluster,
        "-f",
        str(first),
        "-f",
        str(second),
        "--cert",
        str(prod_keys.cert),
        "--kubeconfig",
        str(_kubeconfig(cluster, "sealer", namespace="team-a")),
        "-o",
        "yaml",
    )
    assert out.returncode == 0, out.stderr
    sealed = [d for d in yaml.safe_load_all(out.stdout) if d]
    where = [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in sealed]
    assert where == [("team-a", "db"), ("prod", "api"), ("prod", "cache")]
    key = prod_keys
    assert _open(key, sealed[0]["spec"]["encryptedData"]["password"], b"team-a/db") == b"hunter2"
    assert _open(key, sealed[1]["spec"]["encryptedData"]["password"], b"prod/api") == b"hunter2"
    assert _open(key, sealed[2]["spec"]["encryptedData"]["password"], b"prod/cache") == (
        b"swordfish"
    )
