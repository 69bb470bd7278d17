"""kubernetes auth against a real server subprocess: JWKS verification via hvac, every rejection,
and TokenReview mode against the kmock Kubernetes API emulator over HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import hvac
import hvac.exceptions
import kmock
import pytest

from tests.support.server import RunningServer
from tests.unit.server.auth.k8s_jwts import AUDIENCE, ISSUER, ClusterKeys

REVIEWER_JWT = "reviewer-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def keys() -> ClusterKeys:
    return ClusterKeys()


@pytest.fixture(scope="module")
def admin(kustos_server: RunningServer, keys: ClusterKeys) -> hvac.Client:
    client = hvac.Client(url=kustos_server.addr, token=kustos_server.root_token)
    client.sys.enable_auth_method("kubernetes")
    client.write_data("auth/kubernetes/config", data={"jwks": keys.jwks(), "issuer": ISSUER})
    client.write_data(
        "auth/kubernetes/role/web",
        data={
            "bound_service_account_names": ["web"],
            "bound_service_account_namespaces": ["apps", "staging-*"],
            "audience": AUDIENCE,
            "token_policies": ["web-read"],
            "token_ttl": "30m",
        },
    )
    return client


def test_service_account_jwt_logs_in_through_jwks(
    kustos_server: RunningServer, admin: hvac.Client, keys: ClusterKeys
) -> None:
    workload = hvac.Client(url=kustos_server.addr)
    answer = workload.auth.kubernetes.login(
        role="web", jwt=keys.token(namespace="apps", name="web")
    )
    auth = answer["auth"]
    assert auth["policies"] == ["default", "web-read"]
    assert auth["metadata"]["service_account_namespace"] == "apps"
    assert auth["metadata"]["service_account_name"] == "web"
    assert auth["metadata"]["service_account_uid"] == str(
        uuid.uuid5(uuid.NAMESPACE_DNS, "apps/web")
    )
    assert workload.token == auth["client_token"]
    me = workload.auth.token.lookup_self()["data"]
    assert me["display_name"] == "kubernetes-apps-web"
    assert me["meta"]["role"] == "web" and me["policies"] == ["default", "web-read"]
    assert 1790 <= me["ttl"] <= 1800
    staging = hvac.Client(url=kustos_server.addr)
    staging.auth.kubernetes.login(role="web", jwt=keys.token(namespace="staging-eu", name="web"))
    assert staging.is_authenticated()


@pytest.mark.parametrize("kind", ["RSA", "EC"])
def test_pem_keys_take_certificates_as_hvac_sends_them(
    kustos_server: RunningServer, kind: str
) -> None:
    """Vault accepts a certificate in ``pem_keys`` (hvac's configure() sends one); its key verifies."""
    keys = ClusterKeys(kind=kind)
    admin = hvac.Client(url=kustos_server.addr, token=kustos_server.root_token)
    mount = f"k8s-cert-{kind.lower()}"
    admin.sys.enable_auth_method("kubernetes", path=mount)
    admin.auth.kubernetes.configure(
        kubernetes_host="https://127.0.0.1:6443",
        pem_keys=[keys.certificate_pem()],
        issuer=ISSUER,
        mount_point=mount,
    )
    admin.auth.kubernetes.create_role(
        "web",
        bound_service_account_names=["web"],
        bound_service_account_namespaces=["apps"],
        audience=AUDIENCE,
        mount_point=mount,
    )
    answer = hvac.Client(url=kustos_server.addr).auth.kubernetes.login(
        role="web", jwt=keys.token(namespace="apps", name="web"), mount_point=mount
    )
    assert answer["auth"]["metadata"]["service_account_name"] == "web"
    other = ClusterKeys(kind=kind)  # a certificate for another key does not verify it
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=kustos_server.addr).auth.kubernetes.login(
            role="web", jwt=other.token(namespace="apps", name="web"), mount_point=mount
        )
    with pytest.raises(
        hvac.exceptions.InvalidRequest, match=r"pem_keys\[0\] is not a valid PEM certificate"
    ):
        admin.auth.kubernetes.configure(
            kubernetes_host="https://127.0.0.1:6443",
            pem_keys=["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"],
            mount_point=mount,
        )


@pytest.mark.parametrize(
    ("jwt_for", "error", "message"),
    [
        (
            lambda k: k.token(now=time.time() - 7200, lifetime=600),
            hvac.exceptions.Forbidden,
            "service account JWT is expired",
        ),
        (
            lambda k: k.token(audience="vault"),
            hvac.exceptions.Forbidden,
            "invalid audience (aud) claim",
        ),
        (
            lambda k: k.token(issuer="https://other-cluster.example"),
            hvac.exceptions.Forbidden,
            "invalid issuer (iss) claim",
        ),
        (
            lambda k: ClusterKeys(kid=k.kid).token(),
            hvac.exceptions.Forbidden,
            "invalid JWT signature",
        ),
        (
            lambda k: k.token(name="admin"),
            hvac.exceptions.Forbidden,
            "service account name not authorized",
        ),
        (
            lambda k: k.token(namespace="kube-system"),
            hvac.exceptions.Forbidden,
            "namespace not authorized",
        ),
    ],
    ids=[
        "expired",
        "wrong-audience",
        "wrong-issuer",
        "bad-signature",
        "unbound-service-account",
        "unbound-namespace",
    ],
)
def test_bad_tokens_are_rejected_with_a_clear_error(
    kustos_server: RunningServer,
    admin: hvac.Client,
    keys: ClusterKeys,
    jwt_for: Any,
    error: type[Exception],
    message: str,
) -> None:
    workload = hvac.Client(url=kustos_server.addr)
    with pytest.raises(error) as raised:
        workload.auth.kubernetes.login(role="web", jwt=jwt_for(keys))
    assert message in str(raised.value)
    assert workload.token is None or not workload.is_authenticated()


def test_unknown_role_is_a_bad_request(
    kustos_server: RunningServer, admin: hvac.Client, keys: ClusterKeys
) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest, match='invalid role name "nope"'):
        hvac.Client(url=kustos_server.addr).auth.kubernetes.login(role="nope", jwt=keys.token())


def _review(cluster: kmock.KubernetesEmulator, authenticated: dict[str, str]) -> Any:
    """A TokenReview handler: tokens in ``authenticated`` map to service-account usernames.

    A real API server never stores TokenReviews; the emulator keeps every created object,
    so the handler forgets it (else the next nameless TokenReview would conflict).
    """

    def handle(request: kmock.Request) -> dict[str, Any]:
        cluster.objects.clear()
        token = request.data["spec"]["token"]
        status: dict[str, Any] = {"authenticated": False, "error": "invalid bearer token"}
        if token in authenticated:
            status = {
                "authenticated": True,
                "user": {
                    "username": authenticated[token],
                    "uid": "3c1f0d8e-1111-4111-8111-000000000042",
                    "groups": ["system:serviceaccounts"],
                    "extra": {"authentication.kubernetes.io/pod-name": ["worker-5f6d-abc12"]},
                },
                "audiences": request.data["spec"].get("audiences")
                or ["https://kubernetes.default.svc"],
            }
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}

    return handle


async def test_token_review_mode_against_kmock(
    kustos_server: RunningServer, kmock: kmock.KubernetesEmulator
) -> None:
    keys = ClusterKeys()  # the server never sees these keys: the cluster vouches for the token
    good = keys.token(namespace="batch", name="worker", audience=["https://kubernetes.default.svc"])
    forged = ClusterKeys().token(namespace="batch", name="worker")
    other = keys.token(namespace="batch", name="intruder")
    accounts = {
        good: "system:serviceaccount:batch:worker",
        other: "system:serviceaccount:batch:intruder",
    }
    reviews = kmock["post /apis/authentication.k8s.io/v1/tokenreviews"] << _review(kmock, accounts)
    admin = hvac.Client(url=kustos_server.addr, token=kustos_server.root_token)

    def configure() -> None:
        admin.sys.enable_auth_method("kubernetes", path="k8s-review")
        admin.auth.kubernetes.configure(
            kubernetes_host=str(kmock.url).rstrip("/"),
            token_reviewer_jwt=REVIEWER_JWT,
            mount_point="k8s-review",
        )
        admin.auth.kubernetes.create_role(
            "batch",
            bound_service_account_names=["worker"],
            bound_service_account_namespaces=["batch"],
            policies=["batch-jobs"],
            mount_point="k8s-review",
        )

    await asyncio.to_thread(configure)

    def login(jwt: str) -> dict[str, Any]:
        return dict(
            hvac.Client(url=kustos_server.addr).auth.kubernetes.login(
                role="batch", jwt=jwt, mount_point="k8s-review"
            )
        )

    answer = await asyncio.to_thread(login, good)
    meta = answer["auth"]["metadata"]
    assert meta["service_account_name"] == "worker" and meta["service_account_namespace"] == "batch"
    assert meta["service_account_uid"] == "3c1f0d8e-1111-4111-8111-000000000042"
    assert meta["service_account_pod_name"] == "worker-5f6d-abc12"
    assert answer["auth"]["policies"] == ["batch-jobs", "default"]
    assert len(reviews) == 1
    assert reviews[0].headers["Authorization"] == f"Bearer {REVIEWER_JWT}"
    assert reviews[0].data["spec"]["token"] == good
    with pytest.raises(hvac.exceptions.Forbidden, match="service account unauthorized"):
        await asyncio.to_thread(login, forged)
    with pytest.raises(hvac.exceptions.Forbidden, match="service account name not authorized"):
        await asyncio.to_thread(login, other)
    assert len(reviews) == 3
