"""Write the external-secrets.io CRDs Kustos serves: deploy/crds/ and the chart's crds/.

External Secrets' manifests must apply unchanged, and the real API server
rejects (``kubectl apply`` asks for strict field validation) any field a
structural schema does not name. So these schemas name every field of
External Secrets' API (``external-secrets.io/v1`` ExternalSecret,
SecretStore, ClusterSecretStore, ClusterExternalSecret, ``v1alpha1``
PushSecret; ``v1beta1`` served with the same schema), written here from its
Go API types, field by field, including those Kustos does not act on (the
controller then answers with a clear condition, never a silent drop). The
``provider`` block of a store names the providers Kustos has (``fake``,
``kubernetes``, ``aws``, ``vault``, ``kustos``) and keeps the others'
fields as they are (``x-kubernetes-preserve-unknown-fields``): a store for
another backend is accepted and reported as unsupported.

No ``default:`` values (Argo CD would report them as drift). Run
``python scripts/generate_eso_crds.py`` after a change; a unit test checks
the committed files are what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
GROUP = "external-secrets.io"
TARGETS = (ROOT / "deploy/crds", ROOT / "deploy/helm/kustos/crds")

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
INT: Schema = {"type": "integer"}
STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
ANY_JSON: Schema = {"x-kubernetes-preserve-unknown-fields": True}


def obj(properties: dict[str, Schema] | None = None, *, required: list[str] | None = None,
        open_ended: bool = False, description: str | None = None) -> Schema:  # fmt: skip
    schema: Schema = {"type": "object"}
    if description:
        schema["description"] = description
    if properties:
        schema["properties"] = properties
    if required:
        schema["required"] = required
    if open_ended:
        schema["x-kubernetes-preserve-unknown-fields"] = True
    return schema


def arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


def strings() -> Schema:
    return arr(STRING)


LABEL_SELECTOR = obj(
    {
        "matchLabels": STRING_MAP,
        "matchExpressions": arr(
            obj(
                {"key": STRING, "operator": STRING, "values": strings()},
                required=["key", "operator"],
            )
        ),
    }
)
SECRET_KEY_SELECTOR = obj({"name": STRING, "namespace": STRING, "key": STRING})
SERVICE_ACCOUNT_SELECTOR = obj(
    {"name": STRING, "namespace": STRING, "audiences": strings()}, required=["name"]
)
CA_PROVIDER = obj(
    {"type": enum("Secret", "ConfigMap"), "name": STRING, "key": STRING, "namespace": STRING},
    required=["type", "name"],
)
STORE_REF = obj({"name": STRING, "kind": enum("SecretStore", "ClusterSecretStore")})
GENERATOR_REF = obj(
    {"apiVersion": STRING, "kind": STRING, "name": STRING}, required=["kind", "name"]
)
DECODING = enum("Auto", "Base64", "Base64URL", "None")
CONVERSION = enum("Default", "Unicode")
NULL_BYTES = enum("Ignore", "Fail")

REMOTE_REF = obj(
    {
        "key": STRING,
        "metadataPolicy": enum("None", "Fetch"),
        "property": STRING,
        "version": STRING,
        "conversionStrategy": CONVERSION,
        "decodingStrategy": DECODING,
        "nullBytePolicy": NULL_BYTES,
    },
    required=["key"],
)
FIND = obj(
    {
        "path": STRING,
        "name": obj({"regexp": STRING}),
        "tags": STRING_MAP,
        "conversionStrategy": CONVERSION,
        "decodingStrategy": DECODING,
        "nullBytePolicy": NULL_BYTES,
    }
)
REWRITE = obj(
    {
        "merge": obj(
            {
                "into": STRING,
                "priority": strings(),
                "priorityPolicy": enum("IgnoreNotFound", "Strict"),
                "conflictPolicy": enum("Ignore", "Error"),
                "strategy": enum("Extract", "JSON"),
            }
        ),
        "regexp": obj({"source": STRING, "target": STRING}, required=["source", "target"]),
        "transform": obj({"template": STRING}, required=["template"]),
    }
)
TEMPLATE_REF = obj(
    {
        "name": STRING,
        "items": arr(
            obj({"key": STRING, "templateAs": enum("Values", "KeysAndValues")}, required=["key"])
        ),
    },
    required=["name", "items"],
)
TEMPLATE = obj(
    {
        "type": STRING,
        "engineVersion": enum("v1", "v2"),
        "metadata": obj({"annotations": STRING_MAP, "labels": STRING_MAP, "finalizers": strings()}),
        "mergePolicy": enum("Replace", "Merge"),
        "data": STRING_MAP,
        "templateFrom": arr(
            obj(
                {
                    "configMap": TEMPLATE_REF,
                    "secret": TEMPLATE_REF,
                    "target": STRING,
                    "literal": STRING,
                    "valuesDecodingStrategy": DECODING,
                }
            )
        ),
    }
)
EXTERNAL_SECRET_SPEC = obj(
    {
        "secretStoreRef": STORE_REF,
        "target": obj(
            {
                "name": STRING,
                "creationPolicy": enum("Owner", "Orphan", "Merge", "None", "CreateOrMerge"),
                "deletionPolicy": enum("Delete", "Merge", "Retain"),
                "template": TEMPLATE,
                "manifest": obj({"apiVersion": STRING, "kind": STRING}),
                "immutable": BOOL,
            }
        ),
        "refreshPolicy": enum("CreatedOnce", "Periodic", "OnChange"),
        "refreshInterval": STRING,
        "syncWindows": obj(
            {
                "kind": enum("allow", "deny"),
                "windows": arr(obj({"schedule": STRING, "duration": STRING})),
            }
        ),
        "data": arr(
            obj(
                {
                    "secretKey": STRING,
                    "remoteRef": REMOTE_REF,
                    "sourceRef": obj({"storeRef": STORE_REF, "generatorRef": GENERATOR_REF}),
                },
                required=["secretKey", "remoteRef"],
            )
        ),
        "dataFrom": arr(
            obj(
                {
                    "extract": REMOTE_REF,
                    "find": FIND,
                    "rewrite": arr(REWRITE),
                    "sourceRef": obj({"storeRef": STORE_REF, "generatorRef": GENERATOR_REF}),
                }
            )
        ),
    }
)
CONDITIONS = arr(
    obj(
        {
            "type": STRING,
            "status": STRING,
            "reason": STRING,
            "message": STRING,
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
        required=["type", "status"],
    )
)
EXTERNAL_SECRET_STATUS = obj(
    {
        "refreshTime": {"type": "string", "format": "date-time", "nullable": True},
        "syncedResourceVersion": STRING,
        "conditions": CONDITIONS,
        "binding": obj({"name": STRING}),
    }
)

# --- stores ------------------------------------------------------------------------------

VAULT = obj(
    {
        "server": STRING,
        "path": STRING,
        "version": enum("v1", "v2"),
        "namespace": STRING,
        "caBundle": STRING,
        "caProvider": CA_PROVIDER,
        "tls": obj({"certSecretRef": SECRET_KEY_SELECTOR, "keySecretRef": SECRET_KEY_SELECTOR}),
        "readYourWrites": BOOL,
        "forwardInconsistent": BOOL,
        "headers": STRING_MAP,
        "checkAndSet": obj({"required": BOOL}),
        "auth": obj(
            {
                "namespace": STRING,
                "tokenSecretRef": SECRET_KEY_SELECTOR,
                "appRole": obj(
                    {
                        "path": STRING,
                        "roleId": STRING,
                        "roleRef": SECRET_KEY_SELECTOR,
                        "secretRef": SECRET_KEY_SELECTOR,
                    },
                    required=["secretRef"],
                ),
                "kubernetes": obj(
                    {
                        "mountPath": STRING,
                        "serviceAccountRef": SERVICE_ACCOUNT_SELECTOR,
                        "secretRef": SECRET_KEY_SELECTOR,
                        "role": STRING,
                    },
                    required=["role"],
                ),
            },
            open_ended=True,  # ldap, jwt, cert, iam, userPass, gcp: accepted, refused at run time
        ),
    },
    required=["server"],
    open_ended=True,
)
PROVIDERS = obj(
    {
        "fake": obj(
            {
                "data": arr(
                    obj(
                        {"key": STRING, "value": STRING, "version": STRING, "valueMap": STRING_MAP},
                        required=["key"],
                    )
                ),
                "validationResult": INT,
            }
        ),
        "kubernetes": obj(
            {
                "remoteNamespace": STRING,
                "auth": obj(
                    {"serviceAccount": SERVICE_ACCOUNT_SELECTOR},
                    open_ended=True,  # cert and token auth: accepted, refused at run time
                ),
                "server": obj({"url": STRING, "caBundle": STRING, "caProvider": CA_PROVIDER}),
                "authRef": SECRET_KEY_SELECTOR,
            },
            open_ended=True,
        ),
        "aws": obj(
            {
                "service": STRING,
                "region": STRING,
                "role": STRING,
                "endpoint": STRING,
                "auth": obj(
                    {
                        "secretRef": obj(
                            {
                                "accessKeyIDSecretRef": SECRET_KEY_SELECTOR,
                                "secretAccessKeySecretRef": SECRET_KEY_SELECTOR,
                                "sessionTokenSecretRef": SECRET_KEY_SELECTOR,
                            }
                        )
                    },
                    open_ended=True,
                ),
            },
            open_ended=True,
        ),
        "vault": VAULT,
        "kustos": VAULT,
    },
    open_ended=True,
    description="One provider. Kustos acts on fake, kubernetes, aws, vault and kustos; "
    "the fields of External Secrets' other providers are kept and reported as unsupported.",
)
STORE_SPEC = obj(
    {
        "controller": STRING,
        "provider": PROVIDERS,
        "retrySettings": obj({"maxRetries": INT, "retryInterval": STRING}),
        "refreshInterval": {"x-kubernetes-int-or-string": True},
        "conditions": arr(
            obj(
                {
                    "namespaceSelector": LABEL_SELECTOR,
                    "namespaces": strings(),
                    "namespaceRegexes": strings(),
                }
            )
        ),
    },
    required=["provider"],
)
STORE_STATUS = obj({"conditions": CONDITIONS, "capabilities": STRING})

# --- ClusterExternalSecret and PushSecret ---------------------------------------------------

CLUSTER_EXTERNAL_SECRET_SPEC = obj(
    {
        "externalSecretSpec": EXTERNAL_SECRET_SPEC,
        "externalSecretName": STRING,
        "externalSecretMetadata": obj({"annotations": STRING_MAP, "labels": STRING_MAP}),
        "namespaceSelector": LABEL_SELECTOR,
        "namespaceSelectors": arr(LABEL_SELECTOR),
        "namespaces": strings(),
        "refreshTime": STRING,
    },
    required=["externalSecretSpec"],
)
CLUSTER_EXTERNAL_SECRET_STATUS = obj(
    {
        "externalSecretName": STRING,
        "failedNamespaces": arr(
            obj({"namespace": STRING, "reason": STRING}, required=["namespace"])
        ),
        "provisionedNamespaces": strings(),
        "conditions": arr(
            obj({"type": STRING, "status": STRING, "message": STRING}, required=["type", "status"])
        ),
    }
)
PUSH_STORE_REF = obj(
    {
        "name": STRING,
        "labelSelector": LABEL_SELECTOR,
        "kind": enum("SecretStore", "ClusterSecretStore"),
    }
)
PUSH_SECRET_SPEC = obj(
    {
        "refreshInterval": STRING,
        "secretStoreRefs": arr(PUSH_STORE_REF),
        "updatePolicy": enum("Replace", "IfNotExists"),
        "deletionPolicy": enum("Delete", "None"),
        "selector": obj(
            {
                "secret": obj({"name": STRING, "selector": LABEL_SELECTOR}),
                "generatorRef": GENERATOR_REF,
            }
        ),
        "data": arr(
            obj(
                {
                    "match": obj(
                        {
                            "secretKey": STRING,
                            "remoteRef": obj(
                                {"remoteKey": STRING, "property": STRING}, required=["remoteKey"]
                            ),
                        },
                        required=["remoteRef"],
                    ),
                    "metadata": ANY_JSON,
                    "conversionStrategy": enum("None", "ReverseUnicode"),
                },
                required=["match"],
            )
        ),
        "dataTo": arr(
            obj(
                {
                    "storeRef": PUSH_STORE_REF,
                    "remoteKey": STRING,
                    "match": obj({"regexp": STRING}),
                    "rewrite": arr(
                        obj(
                            {
                                "regexp": obj(
                                    {"source": STRING, "target": STRING},
                                    required=["source", "target"],
                                ),
                                "transform": obj({"template": STRING}, required=["template"]),
                            }
                        )
                    ),
                    "metadata": ANY_JSON,
                    "conversionStrategy": enum("None", "ReverseUnicode"),
                }
            )
        ),
        "template": TEMPLATE,
    },
    required=["secretStoreRefs", "selector"],
)
PUSH_SECRET_STATUS = obj(
    {
        "refreshTime": {"type": "string", "format": "date-time", "nullable": True},
        "syncedResourceVersion": STRING,
        "syncedPushSecrets": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": obj(open_ended=True),
            },
        },
        "conditions": CONDITIONS,
    }
)

READY = [
    {
        "name": "Status",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
]


def crd(*, kind: str, plural: str, short: list[str], scope: str, spec: Schema,
        status: Schema, versions: list[str], columns: list[dict[str, str]],
        comment: str) -> tuple[str, dict[str, Any]]:  # fmt: skip
    schema = obj(
        {"apiVersion": STRING, "kind": STRING, "metadata": obj(), "spec": spec, "status": status}
    )
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "kustos"},
        },
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": ["external-secrets", "kustos"],
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": index == 0,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
                for index, version in enumerate(versions)
            ],
        },
    }
    return comment, body


def definitions() -> list[tuple[str, dict[str, Any]]]:
    """Every CRD: (the comment heading its file, the object)."""
    store_columns = [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        *READY,
    ]
    return [
        crd(
            kind="ExternalSecret",
            plural="externalsecrets",
            short=["es"],
            scope="Namespaced",
            spec=EXTERNAL_SECRET_SPEC,
            status=EXTERNAL_SECRET_STATUS,
            versions=["v1", "v1beta1"],
            columns=[
                {"name": "Store", "type": "string", "jsonPath": ".spec.secretStoreRef.name"},
                {"name": "Refresh Interval", "type": "string", "jsonPath": ".spec.refreshInterval"},
                *READY,
            ],
            comment="ExternalSecret (external-secrets.io/v1, v1beta1): External Secrets' own "
            "group, served by kustos controller run (off with --no-eso-group).",
        ),
        crd(
            kind="SecretStore",
            plural="secretstores",
            short=["ss"],
            scope="Namespaced",
            spec=STORE_SPEC,
            status=STORE_STATUS,
            versions=["v1", "v1beta1"],
            columns=store_columns,
            comment="SecretStore (external-secrets.io/v1, v1beta1).",
        ),
        crd(
            kind="ClusterSecretStore",
            plural="clustersecretstores",
            short=["css"],
            scope="Cluster",
            spec=STORE_SPEC,
            status=STORE_STATUS,
            versions=["v1", "v1beta1"],
            columns=store_columns,
            comment="ClusterSecretStore (external-secrets.io/v1, v1beta1).",
        ),
        crd(
            kind="ClusterExternalSecret",
            plural="clusterexternalsecrets",
            short=["ces"],
            scope="Cluster",
            spec=CLUSTER_EXTERNAL_SECRET_SPEC,
            status=CLUSTER_EXTERNAL_SECRET_STATUS,
            versions=["v1", "v1beta1"],
            columns=[
                {
                    "name": "Store",
                    "type": "string",
                    "jsonPath": ".spec.externalSecretSpec.secretStoreRef.name",
                },
                {
                    "name": "Ready",
                    "type": "string",
                    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                },
            ],
            comment="ClusterExternalSecret (external-secrets.io/v1, v1beta1): one "
            "ExternalSecret in each selected namespace.",
        ),
        crd(
            kind="PushSecret",
            plural="pushsecrets",
            short=["ps"],
            scope="Namespaced",
            spec=PUSH_SECRET_SPEC,
            status=PUSH_SECRET_STATUS,
            versions=["v1alpha1"],
            columns=[
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                *READY,
            ],
            comment="PushSecret (external-secrets.io/v1alpha1, as in External Secrets): a "
            "Secret's keys written to a store.",
        ),
    ]


class _Dumper(yaml.SafeDumper):
    """Block style, no aliases (each CRD file stands alone, as kubectl and helm read it)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(comment: str, body: dict[str, Any]) -> str:
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, width=100)
    header = (
        f"# {comment}\n"
        "# Written by scripts/generate_eso_crds.py from External Secrets' API field names;"
        " do not edit.\n"
    )
    return header + text


def files() -> dict[str, str]:
    """File name -> content, for every CRD."""
    return {
        f"{GROUP}_{body['spec']['names']['plural']}.yaml": render(comment, body)
        for comment, body in definitions()
    }


def main() -> int:
    for directory in TARGETS:
        for name, text in files().items():
            (directory / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
