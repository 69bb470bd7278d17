"""External Secrets' own manifests (``external-secrets.io``), unchanged, on a real kube-apiserver.

The manifests below are written as External Secrets' documentation writes
them (YAML, ``external-secrets.io/v1``, Go templates, ``dataFrom``,
``templateFrom``, fields Kustos does not act on) and created with strict
field validation, as ``kubectl apply`` does. The controller runs as the
chart's ServiceAccount and reads from a real ``kustos server --dev`` through
the ``vault`` provider, as an External Secrets user pointing at Kustos would.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import yaml

from tests.support.server import RunningServer, kustos_server

__all__ = ["kustos_server"]

GROUP = "external-secrets.io"
ESO = f"{GROUP}/v1"


def _decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


def _ready(body: dict[str, Any] | None) -> tuple[str, str, str] | None:
    for condition in ((body or {}).get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"], condition.get("reason", ""), condition.get("message", "")
    return None


_PLURALS = {
    "SecretStore": "secretstores",
    "ClusterSecretStore": "clustersecretstores",
    "ExternalSecret": "externalsecrets",
    "ClusterExternalSecret": "clusterexternalsecrets",
    "PushSecret": "pushsecrets",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
}


async def apply_yaml(api: Any, text: str) -> list[dict[str, Any]]:
    """Create every document of ``text`` (strict field validation), in ``api.ns`` when namespaced."""
    created = []
    for document in yaml.safe_load_all(text.replace("NAMESPACE", api.ns)):
        if document:
            created.append(await api.create(_PLURALS[document["kind"]], document))
    return created


async def _token_secret(api: Any, token: str) -> None:
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "vault-token", "namespace": api.ns},
            "data": {"token": base64.b64encode(token.encode()).decode()},
        },
    )


STORE = """
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: vault-backend
  namespace: NAMESPACE
spec:
  provider:
    vault:
      server: "SERVER"
      path: "secret"
      version: "v2"
      auth:
        tokenSecretRef:
          name: "vault-token"
          key: "token"
"""

EXTERNAL_SECRET = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-tpl
  namespace: NAMESPACE
data:
  config.yaml: |
    database:
      user: {{ .username }}
      password: {{ .password | quote }}
  labels.tpl: |
    team: {{ .team | lower }}
---
apiVersion: v1
kind: Secret
metadata:
  name: secret-tpl
  namespace: NAMESPACE
stringData:
  annotations.tpl: |
    rotated-by: {{ .username | trim | quote }}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: app-credentials
  namespace: NAMESPACE
spec:
  refreshInterval: 1h
  refreshPolicy: Periodic
  secretStoreRef:
    name: vault-backend
    kind: SecretStore
  target:
    name: app-credentials
    creationPolicy: Owner
    deletionPolicy: Retain
    template:
      engineVersion: v2
      type: kubernetes.io/basic-auth
      metadata:
        annotations:
          owner: "{{ .team }}"
        labels:
          app: demo
      data:
        username: "{{ .username }}"
        password: "{{ .password }}"
        dsn: "postgres://{{ .username }}:{{ .password | urlquery }}@{{ (.config | fromJson).host }}:{{ (.config | fromJson).port }}/app"
        token-b64: "{{ .api_token | b64enc }}"
        raw: "{{ .raw_token }}"
        banner: "{{ .team | upper | replace \\"-\\" \\"_\\" | default \\"none\\" }}"
      templateFrom:
      - target: Data
        configMap:
          name: config-tpl
          items:
          - key: config.yaml
            templateAs: Values
      - target: Labels
        configMap:
          name: config-tpl
          items:
          - key: labels.tpl
            templateAs: KeysAndValues
      - target: Annotations
        secret:
          name: secret-tpl
          items:
          - key: annotations.tpl
            templateAs: KeysAndValues
      - literal: |
          greeting-{{ .username }}: {{ .team | lower | quote }}
  data:
  - secretKey: password
    remoteRef:
      key: PREFIX/db
      property: password
      conversionStrategy: Default
      decodingStrategy: None
      metadataPolicy: None
  - secretKey: api_token
    remoteRef:
      key: PREFIX/api/token
      property: value
      decodingStrategy: Base64
  dataFrom:
  - extract:
      key: PREFIX/db
  - find:
      path: PREFIX/api
      name:
        regexp: ".*"
      conversionStrategy: Default
      decodingStrategy: Auto
    rewrite:
    - regexp:
        source: "PREFIX/api/(.*)"
        target: "raw_$1"
"""


async def test_an_unmodified_eso_external_secret_with_go_template_and_datafrom_syncs(
    api, run_operator, wait, kustos_server: RunningServer
) -> None:
    addr, root = kustos_server
    prefix = f"eso-{api.ns}"
    async with httpx.AsyncClient(
        base_url=addr, headers={"X-Vault-Token": root}, timeout=10
    ) as vault:
        for path, data in (
            (
                f"{prefix}/db",
                {
                    "username": "app",
                    "password": "p@ss w/rd",
                    "team": "Pay-Ments",
                    "config": '{"host": "db.internal", "port": 5432}',
                },
            ),
            (f"{prefix}/api/token", {"value": base64.b64encode(b"tok-123").decode()}),
        ):
            answer = await vault.post(f"/v1/secret/data/{path}", json={"data": data})
            assert answer.status_code < 300, answer.text
        await _token_secret(api, root)
        await apply_yaml(api, STORE.replace("SERVER", addr))
        await apply_yaml(api, EXTERNAL_SECRET.replace("PREFIX", prefix))

        async with run_operator():

            async def synced() -> bool:
                es = await api.get(ESO, "externalsecrets", api.ns, "app-credentials")
                return (_ready(es) or ("",))[0] == "True"

            await wait(synced, what="Ready=True on the external-secrets.io ExternalSecret")
            es = await api.get(ESO, "externalsecrets", api.ns, "app-credentials")
            assert _ready(es)[1] == "SecretSynced"  # type: ignore[index]
            secret = await api.get("v1", "secrets", api.ns, "app-credentials")
            assert secret is not None
            assert secret["type"] == "kubernetes.io/basic-auth"
            # mergePolicy Replace (the default): only what the templates make
            assert _decoded(secret) == {
                "username": b"app",
                "password": b"p@ss w/rd",
                "dsn": b"postgres://app:p%40ss+w%2Frd@db.internal:5432/app",
                "token-b64": base64.b64encode(b"tok-123"),  # decoded (Base64), then b64enc
                "raw": b'{"value":"dG9rLTEyMw=="}',  # found, renamed by the rewrite
                "banner": b"PAY_MENTS",
                "config.yaml": b'database:\n  user: app\n  password: "p@ss w/rd"\n',
                "greeting-app": b"pay-ments",  # templateFrom literal, keys and values rendered
            }
            meta = secret["metadata"]
            assert meta["annotations"]["owner"] == "Pay-Ments"
            assert meta["annotations"]["rotated-by"] == "app"  # templateFrom a Secret
            assert meta["labels"]["app"] == "demo" and meta["labels"]["team"] == "pay-ments"
            assert meta["labels"]["reconcile.external-secrets.io/managed"] == "true"
            (owner,) = meta["ownerReferences"]
            assert owner["apiVersion"] == ESO and owner["kind"] == "ExternalSecret"
            assert owner["uid"] == es["metadata"]["uid"]  # type: ignore[index]


async def test_a_template_error_is_a_clear_condition_and_event_never_a_value(
    api, run_operator, wait
) -> None:
    await apply_yaml(
        api,
        """
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: fake, namespace: NAMESPACE}
spec:
  provider:
    fake:
      data:
      - key: /db
        value: '{"password": "very-s3cret-value"}'
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: broken, namespace: NAMESPACE}
spec:
  secretStoreRef: {name: fake, kind: SecretStore}
  target:
    template:
      data:
        url: "{{ .password | b64dec }}"
        other: "{{ .nosuchkey }}"
  dataFrom:
  - extract: {key: /db}
""",
    )
    async with run_operator():

        async def failed() -> bool:
            es = await api.get(ESO, "externalsecrets", api.ns, "broken")
            return (_ready(es) or ("",))[0] == "False"

        await wait(failed, what="Ready=False on the broken ExternalSecret")
        _, reason, message = _ready(  # type: ignore[misc]
            await api.get(ESO, "externalsecrets", api.ns, "broken")
        )
        assert reason == "SecretSyncedError"
        assert "template for key" in message and "failed" in message
        assert "very-s3cret-value" not in message
        events = await api.events(api.ns, reason="UpdateFailed")
        assert events and all("very-s3cret-value" not in e["message"] for e in events)
        assert await api.get("v1", "secrets", api.ns, "broken") is None

        await api.patch(
            ESO,
            "externalsecrets",
            api.ns,
            "broken",
            {
                "spec": {
                    "target": {"template": {"data": {"url": "pw={{ .password }}", "other": None}}}
                }
            },
        )

        async def fixed() -> bool:
            return _decoded(await api.get("v1", "secrets", api.ns, "broken")) == {
                "url": b"pw=very-s3cret-value"
            }

        await wait(fixed, what="the Secret once the template is fixed")


ACCEPTED = """
apiVersion: external-secrets.io/v1beta1
kind: SecretStore
metadata:
  name: gcp-store
  namespace: NAMESPACE
spec:
  controller: dev
  retrySettings:
    maxRetries: 5
    retryInterval: "10s"
  refreshInterval: 60
  provider:
    gcpsm:
      projectID: my-project
      auth:
        secretRef:
          secretAccessKeySecretRef:
            name: gcpsm-secret
            key: secret-access-credentials
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: vault-k8s
  namespace: NAMESPACE
spec:
  provider:
    vault:
      server: "https://vault.example.invalid:8200"
      path: "secret"
      version: "v2"
      namespace: "team-a"
      readYourWrites: true
      headers:
        X-Trace: "1"
      caProvider:
        type: ConfigMap
        name: vault-ca
        key: ca.crt
      checkAndSet:
        required: false
      auth:
        kubernetes:
          mountPath: "kubernetes"
          role: "demo"
          serviceAccountRef:
            name: "app"
            audiences: ["vault"]
---
apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata:
  name: from-gcp
  namespace: NAMESPACE
spec:
  refreshInterval: "15s"
  secretStoreRef:
    kind: SecretStore
    name: gcp-store
  target:
    name: from-gcp
    creationPolicy: Owner
    immutable: false
    template:
      engineVersion: v2
      mergePolicy: Merge
      metadata:
        finalizers: ["example.com/keep"]
  data:
  - secretKey: key
    remoteRef:
      key: my-secret
      version: "1"
      nullBytePolicy: Ignore
  dataFrom:
  - find:
      tags:
        env: prod
    rewrite:
    - transform:
        template: "{{ .value | lower }}"
"""


async def test_unmodified_manifests_with_fields_kustos_does_not_act_on_are_accepted(
    api, run_operator, wait
) -> None:
    await apply_yaml(api, ACCEPTED)
    async with run_operator():

        async def reported() -> bool:
            es = await api.get(ESO, "externalsecrets", api.ns, "from-gcp")
            return (_ready(es) or ("",))[0] == "False"

        await wait(reported, what="the unsupported provider reported on the ExternalSecret")
        _, reason, message = _ready(  # type: ignore[misc]
            await api.get(ESO, "externalsecrets", api.ns, "from-gcp")
        )
        assert reason == "SecretSyncedError"
        assert "gcpsm" in message and "exactly one provider" in message


async def test_no_eso_group_leaves_external_secrets_io_to_external_secrets(
    api, run_operator, wait
) -> None:
    store = {"fake": {"data": [{"key": "k", "value": "v"}]}}
    for version in ("kustos.io/v1", ESO):
        await api.create(
            "secretstores",
            {
                "apiVersion": version,
                "kind": "SecretStore",
                "metadata": {"name": "fake", "namespace": api.ns},
                "spec": {"provider": store},
            },
        )
        await api.create(
            "externalsecrets",
            {
                "apiVersion": version,
                "kind": "ExternalSecret",
                "metadata": {"name": version.split(".")[0], "namespace": api.ns},
                "spec": {
                    "secretStoreRef": {"name": "fake"},
                    "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}],
                },
            },
        )
    await api.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "source", "namespace": api.ns},
            "stringData": {"k": "v"},
        },
    )
    await apply_yaml(
        api,
        f"""
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata:
  name: push
  namespace: NAMESPACE
spec:
  deletionPolicy: Delete
  secretStoreRefs:
  - name: fake
  selector:
    secret:
      name: source
  data:
  - match:
      secretKey: k
      remoteRef:
        remoteKey: pushed
---
apiVersion: external-secrets.io/v1
kind: ClusterExternalSecret
metadata:
  name: ces-{api.ns}
spec:
  namespaces: [NAMESPACE]
  externalSecretName: from-ces
  externalSecretSpec:
    secretStoreRef:
      name: fake
    data:
    - secretKey: k
      remoteRef:
        key: k
""",
    )
    try:
        async with run_operator(eso_group=False):

            async def kustos_synced() -> bool:
                return _decoded(await api.get("v1", "secrets", api.ns, "kustos")) == {"k": b"v"}

            await wait(kustos_synced, what="the kustos.io ExternalSecret synced")
            assert await api.get("v1", "secrets", api.ns, "external-secrets") is None
            es = await api.get(ESO, "externalsecrets", api.ns, "external-secrets")
            assert not (es or {}).get("status"), "an external-secrets.io object was touched"
            push = await api.get(f"{GROUP}/v1alpha1", "pushsecrets", api.ns, "push")
            assert (
                push is not None
                and not push.get("status")
                and not push["metadata"].get("finalizers")
            ), "a PushSecret was touched"
            ces = await api.get(ESO, "clusterexternalsecrets", None, f"ces-{api.ns}")
            assert ces is not None and not ces.get("status"), "a ClusterExternalSecret was touched"
            assert await api.get(ESO, "externalsecrets", api.ns, "from-ces") is None
    finally:
        await api.delete(ESO, "clusterexternalsecrets", None, f"ces-{api.ns}")
