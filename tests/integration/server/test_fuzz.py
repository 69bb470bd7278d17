"""Property-based HTTP fuzzing of every route family: no 5xx, no dropped connection, a sound audit file.

A real ``kustos server --dev`` with a file audit device gets requests that
hypothesis generates from :data:`FAMILIES`: each family lists its path
templates, the methods and the body/query field names its routes read;
values are drawn from hostile scalars (Unicode digits, 2**64, 1e300,
strings past Python's int-string limit, durations of ``"²"``), nested
structures (up to several hundred levels), raw bodies that are not JSON,
odd content types and tokens (root, a limited token, none, a bogus one).
Every answer must be below 500 and arrive on an intact connection
(keep-alive: a response sent before its request body was read must not
desynchronize the next request), and after each family the audit file
must pass ``kustos audit verify``.

Bounded in time: ``derandomize=True`` (the same examples on every run, no
example database), a fixed number of examples per family. A new route
family (a new PathApi prefix, secrets engine or auth method) must be added to
:data:`FAMILIES`; :func:`test_every_route_family_is_fuzzed` fails until it is.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kustos.config import KeyProviderConfig, ServerConfig, StorageConfig
from kustos.server import Core
from kustos.server.auth import METHOD_TYPES
from kustos.server.routes import build_apis
from tests.support.server import RunningServer, assert_audit_file_verifies, start_server

EXAMPLES_PER_FAMILY: Final = 150
"""Generated requests per family (x the families below: well over 2,000 per run)."""


@dataclass(frozen=True)
class Family:
    """One route family: path templates (``{n}``: a generated name), methods, field names."""

    name: str
    paths: tuple[str, ...]
    methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE", "LIST")
    fields: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    raw_bodies: bool = False
    """Also send bodies that are not JSON objects (YAML, SealedSecrets, bytes)."""
    covers: tuple[str, ...] = field(default=())
    """The PathApi prefixes / engine types this family stands for (checked for completeness)."""


TOKEN_FIELDS = (
    "token_policies",
    "policies",
    "token_ttl",
    "ttl",
    "token_max_ttl",
    "max_ttl",
    "token_explicit_max_ttl",
    "token_no_default_policy",
    "token_num_uses",
    "token_type",
    "token_period",
    "token_bound_cidrs",
)

FAMILIES: Final[tuple[Family, ...]] = (
    Family(
        "sys-health-and-seal",
        paths=(
            "sys/health",
            "sys/seal-status",
            "sys/init",
            "PUT sys/unseal",
            "sys/leader",
            "sys/key-status",
            "sys/keyring",
            "POST sys/keyring/disable",
            "sys/rotate",
            "POST sys/rewrap",
            "sys/{n}",
        ),
        methods=("GET", "HEAD", "POST", "PUT"),
        fields=("secret_shares", "secret_threshold", "key", "reset", "version", "max_records"),
        query=("activecode", "sealedcode", "uninitcode", "standbycode", "standbyok"),
        covers=("sys/",),
    ),
    Family(
        "sys-mounts",
        paths=(
            "sys/mounts",
            "POST,GET,DELETE sys/mounts/{n}",
            "POST,GET sys/mounts/{n}/tune",
            "POST,GET sys/mounts/secret/tune",
            "sys/internal/ui/mounts/{n}",
            "sys/internal/ui/mounts/secret/app",
        ),
        fields=(
            "type",
            "description",
            "options",
            "config",
            "default_lease_ttl",
            "max_lease_ttl",
            "force_no_cache",
            "version",
        ),
    ),
    Family(
        "sys-auth",
        paths=("sys/auth", "POST,GET,DELETE sys/auth/{n}", "sys/auth/{n}/tune"),
        fields=("type", "description", "config", "default_lease_ttl", "max_lease_ttl"),
        covers=("sys/auth", "sys/auth/"),
    ),
    Family(
        "policies",
        paths=(
            "sys/policies/acl",
            "PUT,GET,DELETE sys/policies/acl/{n}",
            "sys/policy",
            "sys/policy/{n}",
            "POST sys/capabilities",
            "POST sys/capabilities-self",
            "POST sys/capabilities-accessor",
        ),
        fields=("policy", "rules", "paths", "path", "token", "accessor"),
        covers=(
            "sys/policies/",
            "sys/policy",
            "sys/policy/",
            "sys/capabilities",
            "sys/capabilities-self",
            "sys/capabilities-accessor",
        ),
    ),
    Family(
        "audit",
        paths=(
            "sys/audit",
            "PUT,DELETE sys/audit/{n}",
            "sys/audit-hash/{n}",
            "POST sys/audit-hash/fuzz",
        ),
        fields=("type", "description", "options", "input", "file_path", "local"),
        covers=("sys/audit", "sys/audit/", "sys/audit-hash/"),
    ),
    Family(
        "events",
        paths=("GET sys/events/subscribe", "sys/events/{n}"),
        methods=("GET", "POST"),
        query=("prefix", "heartbeat", "last_event_id"),
        covers=("sys/events/",),
    ),
    Family(
        "sealing",
        paths=(
            "cert.pem",
            "POST verify",
            "POST rotate",
            "sys/sealing/cert",
            "sys/sealing/keys",
            "sys/sealing/keys/rotate",
            "POST sys/sealing/keys/backup",
            "POST sys/sealing/keys/import",
            "POST,GET sys/sealing/config",
            "POST sys/sealing/unseal",
            "sys/sealing/{n}",
        ),
        methods=("GET", "POST", "PUT", "LIST"),
        fields=(
            "renew_period",
            "key_cutoff_time",
            "key_bits",
            "sealed_secret",
            "age_recipients",
            "passphrase",
            "secrets",
            "manifest",
            "backup",
            "age_identities",
        ),
        raw_bodies=True,
        covers=("cert.pem", "verify", "rotate", "sys/sealing/"),
    ),
    Family(
        "bound",
        paths=(
            "POST sys/bound/encrypt",
            "POST sys/bound/decrypt",
            "POST,GET sys/bound/config",
            "sys/bound/rotate",
            "sys/bound/keys",
            "POST sys/bound/kamus/encrypt",
            "sys/bound/{n}",
        ),
        fields=(
            "namespace",
            "service_account",
            "service-account",
            "plaintext",
            "uid",
            "bind_uid",
            "ciphertext",
            "data",
            "kubernetes_mount",
            "allow_unauthenticated_encrypt",
        ),
        covers=("sys/bound/",),
    ),
    Family(
        "tokens",
        paths=(
            "POST auth/token/create",
            "POST auth/token/create-orphan",
            "POST auth/token/lookup",
            "auth/token/lookup-self",
            "POST auth/token/lookup-accessor",
            "POST auth/token/renew",
            "POST auth/token/renew-self",
            "POST auth/token/renew-accessor",
            "POST auth/token/revoke",
            "POST auth/token/revoke-accessor",
            "auth/token/revoke-orphan",
            "auth/token/{n}",
        ),
        fields=(
            "policies",
            "ttl",
            "explicit_max_ttl",
            "display_name",
            "meta",
            "renewable",
            "num_uses",
            "id",
            "no_parent",
            "no_default_policy",
            "token",
            "accessor",
            "increment",
            "period",
        ),
        covers=("auth/token/",),
    ),
    Family(
        "auth-approle",
        paths=(
            "auth/approle/role",
            "POST,GET,DELETE auth/approle/role/{n}",
            "POST,GET auth/approle/role/r/role-id",
            "auth/approle/role/{n}/secret-id",
            "POST,LIST auth/approle/role/r/secret-id",
            "POST auth/approle/role/r/custom-secret-id",
            "POST auth/approle/role/r/secret-id/lookup",
            "POST auth/approle/role/r/secret-id/destroy",
            "auth/approle/role/r/secret-id-accessor/lookup",
            "POST auth/approle/login",
        ),
        fields=(
            "role_id",
            "secret_id",
            "secret_id_accessor",
            "metadata",
            "bind_secret_id",
            "secret_id_ttl",
            "secret_id_num_uses",
            "num_uses",
            "secret_id_bound_cidrs",
            *TOKEN_FIELDS,
        ),
        covers=("auth/", "auth:approle"),
    ),
    Family(
        "auth-userpass-kubernetes",
        paths=(
            "auth/userpass/users",
            "POST,GET,DELETE auth/userpass/users/{n}",
            "POST auth/userpass/users/u/password",
            "auth/userpass/users/u/policies",
            "auth/userpass/login/{n}",
            "POST auth/userpass/login/u",
            "POST,GET auth/kubernetes/config",
            "auth/kubernetes/role",
            "POST,GET,DELETE auth/kubernetes/role/{n}",
            "POST auth/kubernetes/login",
            "auth/{n}/login",
        ),
        fields=(
            "password",
            "role",
            "jwt",
            "kubernetes_host",
            "kubernetes_ca_cert",
            "pem_keys",
            "jwks",
            "jwks_url",
            "jwks_ca_pem",
            "token_reviewer_jwt",
            "issuer",
            "disable_iss_validation",
            "bound_service_account_names",
            "bound_service_account_namespaces",
            "audience",
            "alias_name_source",
            *TOKEN_FIELDS,
        ),
        covers=("auth:userpass", "auth:kubernetes"),
    ),
    Family(
        "auth-jwt-aws",
        paths=(
            "POST,GET auth/jwt/config",
            "auth/jwt/role",
            "POST,GET,DELETE auth/jwt/role/{n}",
            "POST,GET auth/jwt/role/j",
            "POST auth/jwt/login",
            "GET auth/aws/config/client",
            "auth/aws/role",
            "POST,GET,DELETE auth/aws/role/{n}",
            "POST,GET auth/aws/role/a",
            "POST auth/aws/login",
        ),
        fields=(
            "jwt",
            "role",
            "oidc_discovery_url",
            "oidc_discovery_ca_pem",
            "jwks_url",
            "jwks_ca_pem",
            "jwt_validation_pubkeys",
            "jwt_supported_algs",
            "bound_issuer",
            "default_role",
            "role_type",
            "user_claim",
            "user_claim_json_pointer",
            "groups_claim",
            "bound_audiences",
            "bound_subject",
            "bound_claims",
            "bound_claims_type",
            "disable_bound_claims_parsing",
            "claim_mappings",
            "clock_skew_leeway",
            "expiration_leeway",
            "not_before_leeway",
            "auth_type",
            "bound_iam_principal_arn",
            "resolve_aws_unique_ids",
            "iam_http_request_method",
            "iam_request_url",
            "iam_request_body",
            "iam_request_headers",
            *TOKEN_FIELDS,
        ),
        covers=("auth:jwt", "auth:aws"),
    ),
    Family(
        "kv",
        paths=(
            "secret/data/{n}",
            "POST,GET,PATCH secret/data/app",
            "secret/metadata/{n}",
            "POST,GET,PATCH secret/metadata/app",
            "secret/metadata/",
            "POST secret/delete/app",
            "POST secret/undelete/app",
            "secret/destroy/{n}",
            "GET secret/subkeys/app",
            "POST,GET secret/config",
            "secret/{n}",
            "secret/data/{n}/{n}",
            "POST,GET,DELETE secret/rotation/app",
            "POST,GET secret/rotation/{n}",
            "LIST secret/rotation/",
            "POST secret/rotate/app",
            "POST secret/rotate/{n}",
        ),
        methods=("GET", "POST", "PUT", "PATCH", "DELETE", "LIST", "HEAD"),
        fields=(
            "data",
            "options",
            "versions",
            "max_versions",
            "cas_required",
            "delete_version_after",
            "custom_metadata",
            "cas",
            "fields",
            "password_policy",
            "rotation_period",
        ),
        query=("version", "depth", "list", "after", "limit"),
        covers=("kv",),
    ),
    Family(
        "transit",
        paths=(
            "transit/keys",
            "transit/keys/{n}",
            "transit/keys/k",
            "POST transit/keys/k/config",
            "POST transit/keys/k/rotate",
            "POST transit/encrypt/k",
            "transit/encrypt/{n}",
            "POST transit/decrypt/k",
            "POST transit/rewrap/k",
            "POST transit/datakey/plaintext/k",
            "transit/datakey/{n}/k",
            "POST transit/hmac/k",
            "transit/hmac/k/{n}",
            "POST transit/verify/k",
            "POST transit/verify/k/sha2-512",
        ),
        fields=(
            "type",
            "derived",
            "exportable",
            "auto_rotate_period",
            "min_decryption_version",
            "min_encryption_version",
            "deletion_allowed",
            "plaintext",
            "ciphertext",
            "context",
            "key_version",
            "batch_input",
            "partial_failure_response_code",
            "bits",
            "input",
            "hmac",
            "algorithm",
            "hash_algorithm",
            "reference",
            "nonce",
        ),
        covers=("transit",),
    ),
    Family(
        "database",
        paths=(
            "database/config",
            "POST,GET,DELETE database/config/{n}",
            "POST,GET database/config/pg",
            "POST database/reset/{n}",
            "POST database/rotate-root/{n}",
            "database/roles",
            "POST,GET,DELETE database/roles/{n}",
            "POST,GET database/roles/app",
            "GET database/creds/{n}",
            "GET database/creds/app",
            "database/static-roles",
            "POST,GET,DELETE database/static-roles/{n}",
            "GET database/static-creds/{n}",
            "POST database/rotate-role/{n}",
        ),
        fields=(
            "plugin_name",
            "connection_url",
            "username",
            "password",
            "allowed_roles",
            "verify_connection",
            "root_rotation_statements",
            "password_policy",
            "max_open_connections",
            "max_idle_connections",
            "max_connection_lifetime",
            "db_name",
            "creation_statements",
            "revocation_statements",
            "rollback_statements",
            "renew_statements",
            "default_ttl",
            "max_ttl",
            "rotation_period",
            "rotation_statements",
            "credential_type",
            "credential_config",
        ),
        covers=("database",),
    ),
    Family(
        "leases",
        paths=(
            "POST sys/leases/lookup",
            "LIST sys/leases/lookup/{n}",
            "LIST sys/leases/lookup/database/creds/app",
            "POST sys/leases/renew",
            "POST sys/leases/renew/{n}",
            "POST sys/leases/revoke",
            "POST sys/leases/revoke/{n}",
            "POST sys/leases/revoke-prefix/{n}",
            "POST sys/leases/revoke-force/{n}",
            "POST sys/leases/tidy",
            "POST sys/renew",
            "POST sys/renew/{n}",
            "POST sys/revoke/{n}",
            "POST sys/revoke-prefix/{n}",
            "POST sys/revoke-force/{n}",
        ),
        fields=("lease_id", "increment", "sync"),
        covers=(
            "sys/leases/",
            "sys/renew",
            "sys/renew/",
            "sys/revoke",
            "sys/revoke/",
            "sys/revoke-prefix",
            "sys/revoke-prefix/",
            "sys/revoke-force",
            "sys/revoke-force/",
        ),
    ),
    Family(
        "password-policies",
        paths=(
            "LIST sys/policies/password",
            "PUT,GET,DELETE sys/policies/password/{n}",
            "PUT,GET sys/policies/password/pw",
            "GET sys/policies/password/{n}/generate",
            "GET sys/policies/password/pw/generate",
        ),
        fields=("policy",),
        covers=("sys/policies/password", "sys/policies/password/"),
    ),
    Family(
        "unknown-paths",
        paths=("{n}", "{n}/{n}", "sys/{n}/{n}", "auth/{n}/{n}", "secret/{n}/../{n}", "{n}//{n}"),
        methods=("GET", "POST", "PUT", "PATCH", "DELETE", "LIST", "HEAD", "OPTIONS", "TRACE"),
        fields=("data", "type"),
    ),
)
"""The route families the fuzz test drives; add one for a new area (see the module docstring)."""

# -- values ------------------------------------------------------------------------------------------

HUGE_DIGITS = "9" * 5000
NASTY_STRINGS = (
    "",
    " ",
    "²",
    "٣",
    "1²",
    "١٢٣",
    HUGE_DIGITS,
    "1e300",
    "-1",
    "0",
    "1",
    "0x10",
    "1_000",
    "30m",
    "1h²m",
    "²s",
    "99999999999999999999h",
    "true",
    "false",
    "null",
    "{}",
    "[]",
    "\x00",
    "..",
    "a/b",
    "*",
    "sha2-256",
    "sha2-512",
    "aes256-gcm96",
    "kv",
    "kv-v2",
    "transit",
    "file",
    "approle",
    "userpass",
    "kubernetes",
    "default",
    "root",
    "vault:v1:AAAA",
    "vault:v²:AA",
    "vault:v99999999999:AA",
    "aGk=",
    "AAAA",
    "not base64!",
    "k: v",
    "2024-01-01T00:00:00Z",
    "x" * 10_000,
    "é" * 300,
    "\U0001f600",
    "https://127.0.0.1:1",
    "http://127.0.0.1:1/jwks",
    "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
    "age1notarecipient",
)
NASTY_NUMBERS = (
    0,
    1,
    -1,
    2,
    7,
    100,
    101,
    199,
    200,
    204,
    207,
    304,
    400,
    599,
    600,
    2048,
    3072,
    4096,
    8192,
    2**31,
    2**53 + 1,
    2**63,
    2**64,
    10**30,
    -(2**64),
    1.5,
    -0.5,
    1e300,
    -1e300,
    1e-300,
)

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), max_size=40
)
_scalars = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(NASTY_NUMBERS),
    st.booleans(),
    st.none(),
    _text,
    st.integers(),
)


def _deep(depth: int, leaf: object) -> object:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(NASTY_STRINGS[:40]) | _text, children, max_size=4)
    ),
    max_leaves=12,
) | st.builds(_deep, st.sampled_from([8, 40, 63, 64, 65, 200, 300]), _scalars)

SEALED_BITNAMI = {
    "apiVersion": "bitnami.com/v1alpha1",
    "kind": "SealedSecret",
    "metadata": {"name": "s", "namespace": "ns"},
    "spec": {"encryptedData": {"k": "AAAA"}, "template": {"metadata": {"labels": {"a": "b"}}}},
}
RAW_BODIES = (
    b"",
    b"null",
    b"[]",
    b"123",
    b'"x"',
    b"{",
    b'{"a":',
    b"\xff\xfe",
    b"[" * 400 + b"]" * 400,
    b"{" * 100_000,
    b'{"a":' * 300 + b"1" + b"}" * 300,
    b"k: v\n",
    b"- a\n- b\n",
    b"a: &a [x, x]\nb: [*a, *a]\n",
    b"kind: SealedSecret\napiVersion: bitnami.com/v1alpha1\n",
    b"kind: SealedSecret\napiVersion: bitnami.com/v1alpha1\nspec: []\n",
    b"kind: List\nitems: [1, 2]\n",
    b"---\n---\n",
    b"!!python/object:os.system x\n",
    json.dumps(SEALED_BITNAMI).encode(),
    json.dumps({**SEALED_BITNAMI, "spec": "x"}).encode(),
    json.dumps({**SEALED_BITNAMI, "kind": 5}).encode(),
)
CONTENT_TYPES = (
    "application/json",
    "application/merge-patch+json",
    "text/plain",
    "application/x-yaml",
    "",
    "multipart/form-data; boundary=x",
)
NAMES = (
    "app",
    "k",
    "r",
    "u",
    "fz",
    "default",
    "root",
    "secret",
    "transit",
    "approle",
    "x.y",
    "a-b",
    "login",
    "..",
    ".",
    "%",
    "²",
    "a b",
    "é",
    "x" * 300,
    "data",
    "metadata",
    "tune",
)
GOOD: Final[dict[str, tuple[object, ...]]] = {
    "type": (
        "kv",
        "kv-v2",
        "transit",
        "approle",
        "userpass",
        "kubernetes",
        "jwt",
        "file",
        "aes256-gcm96",
    ),
    "options": ({"version": "2"}, {"cas": 1}, {"cas": 0}, {}),
    "data": ({"k": "v"}, {"a": {"b": "c"}}, {"k": None}, "aGVsbG8="),
    "plaintext": ("aGk=", "", "AAAA"),
    "input": ("aGk=", "x"),
    "context": ("Y3R4", ""),
    "ciphertext": ("vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "vault:v1:aGk="),
    "hmac": ("vault:v1:AAAA",),
    "batch_input": ([{"plaintext": "aGk="}, {"plaintext": "aGk=", "reference": "r"}], []),
    "key_version": (1, 2, 0),
    "bits": (128, 256, 512),
    "versions": ([1], [1, 2], "1,2"),
    "max_versions": (0, 3, 1000),
    "cas": (0, 1),
    "ttl": ("1h", "30s", 60, "0"),
    "token_ttl": ("1h", 60),
    "token_max_ttl": ("2h",),
    "secret_id_ttl": ("10m",),
    "secret_id_num_uses": (0, 3),
    "num_uses": (0, 1),
    "delete_version_after": ("0s", "1h"),
    "auto_rotate_period": ("0", "2h"),
    "policies": (["default"], "default,fuzz-limited"),
    "token_policies": (["default"],),
    "policy": (
        'path "secret/*" { capabilities = ["read"] }',
        "not hcl {{",
        '{"path": {}}',
        'length = 20\nrule "charset" {\n  charset = "abcdefgh0123"\n  min-chars = 2\n}\n',
        "length = 100000000",
        "length = 4",
        'length = 8\nrule "charset" {\n  charset = "a"\n  min-chars = 9\n}\n',
    ),
    "connection_url": ("postgresql://{{username}}:{{password}}@127.0.0.1:1/db", "not a url", ""),
    "plugin_name": ("postgresql-database-plugin", "mysql-database-plugin"),
    "db_name": ("pg",),
    "creation_statements": (['CREATE ROLE "{{name}}"'], "x"),
    "verify_connection": (False, True),
    "allowed_roles": ("*", ["app"]),
    "lease_id": ("database/creds/app/abc", "", "../x"),
    "increment": ("1h", 60),
    "fields": (["n"], ["k", "n"], "n"),
    "rotation_period": ("24h", "1s", 3600),
    "password_policy": ("pw", "", "missing"),
    "paths": (["secret/data/app"], "sys/mounts"),
    "password": ("correct horse", ""),
    "role": ("r", "x"),
    "jwt": ("a.b.c", "eyJhbGciOiJub25lIn0.e30."),
    "key_bits": (2048,),
    "renew_period": ("720h", "0"),
    "description": ("fuzz", ""),
    "config": ({"default_lease_ttl": "1h"}, {}),
    "sealed_secret": (SEALED_BITNAMI,),
    "namespace": ("ns", "default"),
    "service_account": ("app", "default"),
    "service-account": ("app",),
    "min_decryption_version": (1,),
    "min_encryption_version": (0, 1),
    "deletion_allowed": (True, False),
    "partial_failure_response_code": (400, 207),
    "algorithm": ("sha2-256", "sha2-512"),
    "custom_metadata": ({"owner": "x"}, {"a": None}),
}
"""Values the routes accept, drawn half the time for these fields so requests get past validation."""
PROTECTED = (
    ("POST", "sys/seal"),
    ("PUT", "sys/seal"),  # a sealed server answers 503 to everything
    ("DELETE", "sys/audit/fuzz"),  # the device whose file is verified
    ("POST", "auth/token/revoke-self"),
    ("PUT", "auth/token/revoke-self"),  # the root token
    # the aws method's STS endpoint stays on loopback (without a config: AWS's own)
    ("POST", "auth/aws/config/client"),
    ("PUT", "auth/aws/config/client"),
    ("DELETE", "auth/aws/config/client"),
)


# -- the server -----------------------------------------------------------------------------------


@dataclass
class Target:
    server: RunningServer
    audit_file: Path
    tokens: tuple[str | None, ...]
    connection: http.client.HTTPConnection | None = None
    sent: int = 0
    problems: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def connect(self) -> http.client.HTTPConnection:
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        return self.connection

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    base = tmp_path_factory.mktemp("fuzz")
    with start_server(base, "--max-value-bytes", "65536") as server:
        audit_file = base / "audit.log"
        with httpx.Client(
            base_url=server.addr, headers={"X-Vault-Token": server.root_token}, timeout=60
        ) as http_client:
            _prepare(http_client, audit_file)
            limited = http_client.post(
                "/v1/auth/token/create", json={"policies": ["fuzz-limited"], "ttl": "1h"}
            ).json()["auth"]["client_token"]
        running = Target(
            server=server,
            audit_file=audit_file,
            tokens=(*(server.root_token,) * 4, limited, None, "hvs.bogus"),
        )
        try:
            yield running
        finally:
            running.close()


def _prepare(http_client: httpx.Client, audit_file: Path) -> None:
    """Mounts, methods, a key, a role, a user, a secret and a policy for the routes to find."""
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "sys/audit/fuzz", {"type": "file", "options": {"file_path": str(audit_file)}}),
        ("POST", "sys/mounts/transit", {"type": "transit"}),
        ("POST", "sys/mounts/database", {"type": "database"}),
        (
            "PUT",
            "sys/policies/password/pw",
            {"policy": 'length = 20\nrule "charset" {\n  charset = "abc123"\n}\n'},
        ),
        ("POST", "secret/rotation/app", {"fields": ["n"], "rotation_period": "24h"}),
        ("POST", "transit/keys/k", {}),
        ("POST", "sys/auth/approle", {"type": "approle"}),
        ("POST", "auth/approle/role/r", {"token_policies": ["default"]}),
        ("POST", "sys/auth/userpass", {"type": "userpass"}),
        ("POST", "auth/userpass/users/u", {"password": "correct horse"}),
        ("POST", "sys/auth/kubernetes", {"type": "kubernetes"}),
        ("POST", "sys/auth/jwt", {"type": "jwt"}),
        ("POST", "auth/jwt/config", {"jwt_validation_pubkeys": [_public_key_pem()]}),
        ("POST", "auth/jwt/role/j", {"user_claim": "sub", "bound_audiences": ["kustos"]}),
        ("POST", "sys/auth/aws", {"type": "aws"}),
        ("POST", "auth/aws/config/client", {"sts_endpoint": "http://127.0.0.1:1"}),
        (
            "POST",
            "auth/aws/role/a",
            {"bound_iam_principal_arn": ["arn:aws:iam::123456789012:user/a"]},
        ),
        ("POST", "sys/sealing/config", {"key_bits": 2048}),
        ("POST", "secret/data/app", {"data": {"k": "v", "n": {"a": 1}}}),
        (
            "POST",
            "sys/policies/acl/fuzz-limited",
            {"policy": 'path "secret/data/app" { capabilities = ["read"] }'},
        ),
    ]
    for method, path, body in steps:
        response = http_client.request(method, f"/v1/{path}", json=body)
        assert response.status_code < 300, (path, response.text)


def _public_key_pem() -> str:
    """A fresh EC public key (PEM) for the jwt method's configuration."""
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# -- one request -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]

    def describe(self) -> str:
        return f"{self.method} /v1/{self.path}?{urlencode(self.query)} body={self.body[:300]!r} headers={ {k: v[:40] for k, v in self.headers.items()} }"


@st.composite
def requests(draw: st.DrawFn, family: Family, tokens: tuple[str | None, ...]) -> Request:
    template = draw(st.sampled_from(family.paths))
    methods, _, template = template.rpartition(" ")
    path = "/".join(
        quote(draw(st.sampled_from(NAMES) | _text.filter(bool)), safe="") if part == "{n}" else part
        for part in template.split("/")
    )
    if methods and draw(st.integers(0, 3)):  # mostly the methods the path serves
        method = draw(st.sampled_from(methods.split(",")))
    else:
        method = draw(st.sampled_from(family.methods) | st.sampled_from(("GET", "POST", "PATCH")))
    query: dict[str, str] = {}
    for name in (
        draw(st.lists(st.sampled_from(family.query), max_size=3, unique=True))
        if family.query
        else ()
    ):
        query[name] = str(
            draw(
                st.sampled_from(NASTY_STRINGS)
                | st.sampled_from(NASTY_NUMBERS).map(str)
                | st.just("secret/")
            )
        )
    kind = draw(st.sampled_from(("fields", "fields", "fields", "raw", "empty")))
    if kind == "raw" or (kind == "fields" and not family.fields):
        body = (
            draw(st.sampled_from(RAW_BODIES) | st.binary(max_size=200))
            if family.raw_bodies or kind == "raw"
            else b""
        )
    elif kind == "fields":
        names = draw(st.lists(st.sampled_from(family.fields), min_size=1, max_size=5, unique=True))
        doc = {
            name: draw(st.sampled_from(GOOD[name]))
            if name in GOOD and draw(st.booleans())
            else draw(_values)
            for name in names
        }
        if draw(st.booleans()) and "batch_input" not in doc and family.name == "transit":
            doc["batch_input"] = [
                draw(st.dictionaries(st.sampled_from(family.fields), _values, max_size=3))
                for _ in range(2)
            ]
        body = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()
    else:
        body = b""
    headers: dict[str, str] = {}
    token = draw(st.sampled_from(tokens))
    if token is not None:
        headers["X-Vault-Token"] = token
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers["Content-Type"] = content_type
    if draw(st.integers(0, 9)) == 0:
        headers["X-Kustos-Reason"] = draw(st.sampled_from(("why", "é" * 600, "x" * 600, "\x7f")))
    return Request(method=method, path=path, query=query, body=body, headers=headers)


def _protected(request: Request) -> bool:
    path = request.path.rstrip("/")
    return (request.method, path) in PROTECTED or (
        request.method == "DELETE"
        and path
        in (
            "sys/mounts/secret",
            "sys/mounts/transit",
            "sys/auth/approle",
            "sys/auth/userpass",
            "sys/auth/kubernetes",
            "sys/auth/jwt",
            "sys/auth/aws",
        )
    )


def _send(target: Target, request: Request) -> None:
    """Send one request; record a 5xx or a dropped connection in ``target.problems``."""
    if _protected(request):
        return
    url = f"/v1/{request.path}" + (f"?{urlencode(request.query)}" if request.query else "")
    target.sent += 1
    connection = target.connect()
    try:
        connection.request(request.method, url, body=request.body or None, headers=request.headers)
        response = connection.getresponse()
        streaming = response.getheader("content-type", "").startswith("text/event-stream")
        data = b"" if streaming else response.read()
        if streaming or response.will_close:
            target.close()
    except (http.client.HTTPException, OSError) as exc:
        target.close()
        target.problems.append(
            f"dropped connection ({type(exc).__name__}: {exc}): {request.describe()}"
        )
        return
    target.statuses[response.status] += 1
    if response.status >= 500:
        target.problems.append(f"{response.status} {data[:300]!r}: {request.describe()}")


def _verify_audit(target: Target) -> None:
    assert_audit_file_verifies(target.audit_file)


# -- the tests --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_no_5xx_and_no_dropped_connection(target: Target, family: Family) -> None:
    sent_before, problems_before = target.sent, len(target.problems)

    @settings(
        max_examples=EXAMPLES_PER_FAMILY,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        _send(target, data.draw(requests(family, target.tokens)))

    statuses_before = Counter(target.statuses)
    fuzz()
    seen = target.statuses - statuses_before
    print(
        f"{family.name}: {target.sent - sent_before} requests, statuses {dict(sorted(seen.items()))}"
    )
    problems = target.problems[problems_before:]
    assert not problems, f"{len(problems)} of {target.sent - sent_before} requests:\n" + "\n".join(
        problems[:20]
    )
    assert target.sent - sent_before >= EXAMPLES_PER_FAMILY * 0.9
    _verify_audit(target)
    unreserved = _unreserved(target)
    print(f"{family.name}: commits before their answer was audited so far: {unreserved}")
    assert unreserved == {}, "these routes commit before declaring their answer (committing.py)"


def _unreserved(target: Target) -> dict[str, float]:
    """``kustos_audit_unreserved_commits_total`` by route (none allowed, see kustos.server.committing)."""
    metrics = httpx.get(f"{target.server.addr}/metrics", timeout=30).text
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("kustos_audit_unreserved_commits_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels.split('route="', 1)[1].split('"', 1)[0]] = float(value)
    return counts


def test_the_families_send_at_least_2000_requests() -> None:
    assert EXAMPLES_PER_FAMILY * len(FAMILIES) >= 2000


async def test_every_route_family_is_fuzzed(tmp_path: Path) -> None:
    """Every PathApi prefix, secrets engine and auth method is covered by a family of :data:`FAMILIES`."""
    config = ServerConfig(
        storage=StorageConfig(url=f"sqlite:{tmp_path / 'kustos.db'}"),
        keys=KeyProviderConfig(kind="local", key_file=tmp_path / "kustos.key"),
        dev=True,
    )
    core = await Core.open(config)
    try:
        wanted = {api.prefix for api in build_apis(core)} | set(core.engines)
        wanted |= {f"auth:{method}" for method in METHOD_TYPES}
    finally:
        await core.close()
    covered = {prefix for family in FAMILIES for prefix in family.covers}
    assert wanted - covered == set(), "add a Family for these to FAMILIES in this file"
