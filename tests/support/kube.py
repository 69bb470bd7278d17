"""A real Kubernetes control plane for tests: etcd + kube-apiserver (+ controller manager).

This is what controller-runtime's *envtest* gives Go operators, for our
Python suite. The binaries come from the directory named by
``KUBEBUILDER_ASSETS`` (files ``kube-apiserver``, ``etcd``, optionally
``kube-controller-manager`` and ``kubectl``), as envtest finds them::

    export KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh)

Without the variable the fixtures skip with that hint; with it set, a
missing binary or a control plane that does not come up is a failure.

:class:`ControlPlane` makes fresh PKI (a CA, the API server's serving
certificate, an admin client certificate in ``system:masters``, a
ServiceAccount signing key), starts etcd on a free loopback port with a new
data directory, then kube-apiserver on a free loopback port, and waits for
``/readyz``. Everything binds to 127.0.0.1; the advertised address is a
documentation address nothing dials. Tests act as:

- the admin, through :attr:`ControlPlane.kubeconfig` (client certificate and
  CA inline, base64, as kind and kubeadm write them) or :meth:`http`;
- a static-token user (:meth:`token_kubeconfig`);
- any user and groups with a client certificate (:meth:`user_kubeconfig`);
- a ServiceAccount, with a real token from the TokenRequest API
  (:meth:`service_account_token`).

:meth:`etcd_get` reads what the API server stored, raw, for at-rest checks.

Fixture ``control_plane`` (session-scoped) is the shared instance, with the
controller manager running (garbage collection, namespace deletion, default
ServiceAccounts). Tests that need other API server flags (an encryption
provider, say) build their own :class:`ControlPlane` and stop it.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "ASSETS_HINT",
    "ControlPlane",
    "assets_dir",
    "control_plane",
    "require_assets",
]

ASSETS_HINT = (
    "needs a real kube-apiserver + etcd: export KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh) "
    "(envtest's convention: a directory with kube-apiserver, etcd, kube-controller-manager)"
)
ADVERTISE_ADDRESS = "192.0.2.10"
"""A documentation address (RFC 5737): the API server requires a non-loopback one; nothing dials it."""
SERVICE_CIDR = "10.0.0.0/24"
ISSUER = "https://kubernetes.default.svc.cluster.local"


def assets_dir() -> Path | None:
    """The ``KUBEBUILDER_ASSETS`` directory, or None when the variable is unset."""
    value = os.environ.get("KUBEBUILDER_ASSETS", "").strip()
    return Path(value) if value else None


def require_assets(*, controller_manager: bool = False) -> Path:
    """The assets directory; skips without ``KUBEBUILDER_ASSETS``, fails when a binary is missing."""
    directory = assets_dir()
    if directory is None:
        pytest.skip(ASSETS_HINT)
    needed = ["kube-apiserver", "etcd"] + (
        ["kube-controller-manager"] if controller_manager else []
    )
    missing = [name for name in needed if _binary(directory, name) is None]
    if missing:
        pytest.fail(f"KUBEBUILDER_ASSETS={directory} lacks {', '.join(missing)}")
    return directory


def _binary(directory: Path, name: str) -> Path | None:
    candidate = directory / name
    if candidate.exists() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    return Path(found) if found and name in ("etcd", "kubectl") else None


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the test process dies (even by SIGKILL).

    A control plane left running by a killed test session would hold memory and
    CPU on the machine until someone noticed it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(count: int) -> list[int]:
    # Distinct: the sockets stay bound until all are chosen (two calls in a row may
    # return one port, and etcd or the API server would then fail to listen).
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class _Pki:
    """A throwaway CA and the certificates it signs (EC P-256; the SA key is RSA)."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, f"kustos-test-ca-{uuid.uuid4().hex[:8]}")]
        )
        now = datetime.datetime.now(tz=datetime.UTC)
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.ca_key, hashes.SHA256())
        )

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
    ) -> tuple[bytes, bytes]:
        """A certificate and key (both PEM) signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = datetime.datetime.now(tz=datetime.UTC)
        usages = ([x509.ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [x509.ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        return _pem_cert(cert), _pem_key(key)

    @property
    def ca_pem(self) -> bytes:
        return _pem_cert(self.ca_cert)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback, with fresh PKI and data."""

    def __init__(
        self,
        assets: Path,
        *,
        controller_manager: bool = False,
        etcd_tls: bool = False,
        encryption_config: str | None = None,
        extra_apiserver_args: Sequence[str] = (),
        root: Path | None = None,
    ) -> None:
        self.assets = assets
        self.with_controller_manager = controller_manager
        self.etcd_tls = etcd_tls
        self.extra_apiserver_args = list(extra_apiserver_args)
        # Short paths: unix sockets (a KMS plugin's, say) must fit in 108 bytes.
        self.root = root or Path(tempfile.mkdtemp(prefix="kcp-", dir="/tmp"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.pki = _Pki()
        self.etcd_port, self.etcd_peer_port, self.port = _free_ports(3)
        self.admin_token = uuid.uuid4().hex
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._write_pki()
        self.encryption_config_path: Path | None = None
        if encryption_config is not None:
            self.set_encryption_config(encryption_config)

    # --- addresses and credentials ----------------------------------------------

    @property
    def url(self) -> str:
        """The API server's URL (what every client dials)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def etcd_url(self) -> str:
        scheme = "https" if self.etcd_tls else "http"
        return f"{scheme}://127.0.0.1:{self.etcd_port}"

    @property
    def ca_pem(self) -> bytes:
        return self.pki.ca_pem

    @property
    def ca_path(self) -> Path:
        return self.root / "pki" / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig: client certificate (``system:masters``), CA inline as base64 data."""
        return self.root / "admin.kubeconfig"

    def _write(self, relative: str, data: bytes, mode: int = 0o600) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
        return path

    def _write_pki(self) -> None:
        self._write("pki/ca.crt", self.pki.ca_pem, 0o644)
        cert, key = self.pki.issue(
            "kube-apiserver",
            dns=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips=["127.0.0.1", "10.0.0.1"],
            server=True,
            client=True,
        )
        self._write("pki/apiserver.crt", cert)
        self._write("pki/apiserver.key", key)
        self.admin_cert, self.admin_key = self.pki.issue(
            "kustos-test-admin", organizations=["system:masters"], client=True
        )
        self._write("pki/admin.crt", self.admin_cert)
        self._write("pki/admin.key", self.admin_key)
        etcd_client_cert, etcd_client_key = self.pki.issue("etcd-client", client=True)
        self._write("pki/etcd-client.crt", etcd_client_cert)
        self._write("pki/etcd-client.key", etcd_client_key)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._write("pki/sa.key", _pem_key(sa_key))
        self._write(
            "pki/sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )
        self._write(
            "pki/tokens.csv",
            f'{self.admin_token},kustos-token-admin,uid-token-admin,"system:masters"\n'.encode(),
        )
        self._write(
            "admin.kubeconfig",
            self._kubeconfig_text(self._cert_user(self.admin_cert, self.admin_key)),
        )

    @staticmethod
    def _cert_user(cert: bytes, key: bytes) -> dict[str, Any]:
        return {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}

    def _kubeconfig_text(self, user: Mapping[str, Any], *, namespace: str | None = None) -> bytes:
        context: dict[str, Any] = {"cluster": "kustos-test", "user": "user"}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kustos-test",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": _b64(self.ca_pem),
                    },
                }
            ],
            "users": [{"name": "user", "user": dict(user)}],
            "contexts": [{"name": "kustos-test", "context": context}],
            "current-context": "kustos-test",
        }
        return yaml.safe_dump(config, sort_keys=False).encode()

    def write_kubeconfig(
        self, path: Path, user: Mapping[str, Any], *, namespace: str | None = None
    ) -> Path:
        """A kubeconfig for this cluster with the given ``user`` entry (CA inline as data)."""
        path.write_bytes(self._kubeconfig_text(user, namespace=namespace))
        path.chmod(0o600)
        return path

    def token_kubeconfig(
        self, path: Path, token: str | None = None, *, namespace: str | None = None
    ) -> Path:
        """A bearer-token kubeconfig (the static admin token unless ``token`` is given)."""
        return self.write_kubeconfig(
            path, {"token": token or self.admin_token}, namespace=namespace
        )

    def user_kubeconfig(
        self, path: Path, user: str, groups: Sequence[str] = (), *, namespace: str | None = None
    ) -> Path:
        """A client-certificate kubeconfig for ``user`` in ``groups`` (RBAC decides what it may do)."""
        cert, key = self.pki.issue(user, organizations=groups, client=True)
        return self.write_kubeconfig(path, self._cert_user(cert, key), namespace=namespace)

    def ssl_context(self, *, cert: bool = True) -> Any:
        """An :class:`ssl.SSLContext` trusting this cluster's CA, with the admin certificate."""
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca_path))
        if cert:
            context.load_cert_chain(
                str(self.root / "pki/admin.crt"), str(self.root / "pki/admin.key")
            )
        return context

    def http(self, *, timeout: float = 30.0) -> httpx.Client:
        """A synchronous client acting as the admin (client certificate)."""
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=timeout)

    def async_http(self, *, timeout: float = 30.0) -> httpx.AsyncClient:
        """An async client acting as the admin (client certificate)."""
        return httpx.AsyncClient(base_url=self.url, verify=self.ssl_context(), timeout=timeout)

    # --- lifecycle ---------------------------------------------------------------

    def set_encryption_config(self, text: str) -> Path:
        """Write the EncryptionConfiguration the API server is (re)started with."""
        self.encryption_config_path = self._write("encryption-config.yaml", text.encode())
        return self.encryption_config_path

    def start(self) -> ControlPlane:
        """Start etcd, then the API server (and the controller manager); wait until ready."""
        try:
            self._start_etcd()
            self.start_apiserver()
            if self.with_controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        process = subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self._processes[name] = process
        return process

    def pid(self, name: str) -> int:
        """The process id of a running component (``etcd``, ``kube-apiserver``, ...), for measurements."""
        return self._processes[name].pid

    def log(self, name: str, *, lines: int = 40) -> str:
        """The last lines a component wrote (for failure messages)."""
        path = self.root / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _start_etcd(self) -> None:
        etcd = _binary(self.assets, "etcd")
        assert etcd is not None
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        args = [
            str(etcd),
            "--name=kustos-test",
            f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=kustos-test={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
        if self.etcd_tls:
            pki = self.root / "pki"
            args += [
                f"--cert-file={pki / 'apiserver.crt'}",
                f"--key-file={pki / 'apiserver.key'}",
                f"--trusted-ca-file={pki / 'ca.crt'}",
                "--client-cert-auth",
            ]
        self._spawn("etcd", args)
        self._wait(lambda: self._etcd_healthy(), what="etcd", component="etcd", timeout=60)

    def _etcd_healthy(self) -> bool:
        try:
            with self.etcd_client(timeout=1.0) as client:
                return client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def etcd_client(self, *, timeout: float = 10.0) -> httpx.Client:
        """HTTP(S) to etcd's v3 JSON gateway (with the etcd client certificate when TLS is on)."""
        verify: Any = True
        if self.etcd_tls:
            import ssl

            verify = ssl.create_default_context(cafile=str(self.ca_path))
            verify.load_cert_chain(
                str(self.root / "pki/etcd-client.crt"), str(self.root / "pki/etcd-client.key")
            )
        return httpx.Client(base_url=self.etcd_url, verify=verify, timeout=timeout)

    def etcd_get(self, key: str) -> bytes | None:
        """The raw bytes the API server stored under ``key`` (e.g. ``/registry/secrets/ns/name``)."""
        with self.etcd_client() as client:
            response = client.post("/v3/kv/range", json={"key": _b64(key.encode())})
            response.raise_for_status()
            kvs = response.json().get("kvs") or []
        return base64.b64decode(kvs[0]["value"]) if kvs else None

    def etcd_keys(self, prefix: str) -> list[str]:
        """Every etcd key under ``prefix``."""
        start = prefix.encode()
        end = start[:-1] + bytes([start[-1] + 1])
        with self.etcd_client() as client:
            response = client.post(
                "/v3/kv/range", json={"key": _b64(start), "range_end": _b64(end), "keys_only": True}
            )
            response.raise_for_status()
            kvs = response.json().get("kvs") or []
        return [base64.b64decode(kv["key"]).decode() for kv in kvs]

    def etcd_put(self, key: str, value: bytes) -> None:
        """Write raw bytes into etcd behind the API server's back (to plant test data)."""
        with self.etcd_client() as client:
            response = client.post(
                "/v3/kv/put", json={"key": _b64(key.encode()), "value": _b64(value)}
            )
            response.raise_for_status()

    def start_apiserver(self, *, extra_args: Sequence[str] = ()) -> None:
        """Start (or start again) the API server against the running etcd and wait for ``/readyz``."""
        apiserver = _binary(self.assets, "kube-apiserver")
        assert apiserver is not None
        pki = self.root / "pki"
        args = [
            str(apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--advertise-address={ADVERTISE_ADDRESS}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ]
        if self.etcd_tls:
            args += [
                f"--etcd-cafile={pki / 'ca.crt'}",
                f"--etcd-certfile={pki / 'etcd-client.crt'}",
                f"--etcd-keyfile={pki / 'etcd-client.key'}",
            ]
        if self.encryption_config_path is not None:
            args += [
                f"--encryption-provider-config={self.encryption_config_path}",
                "--encryption-provider-config-automatic-reload=true",
            ]
        self._spawn("kube-apiserver", [*args, *self.extra_apiserver_args, *extra_args])
        self._wait(
            self._apiserver_ready,
            what="kube-apiserver /readyz",
            component="kube-apiserver",
            timeout=120,
        )

    def stop_apiserver(self) -> None:
        """Stop the API server (etcd keeps running)."""
        self._terminate("kube-apiserver")

    def _apiserver_ready(self) -> bool:
        try:
            with self.http(timeout=2.0) as client:
                return client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def _start_controller_manager(self) -> None:
        manager = _binary(self.assets, "kube-controller-manager")
        assert manager is not None, "kube-controller-manager is not in KUBEBUILDER_ASSETS"
        pki = self.root / "pki"
        self._spawn(
            "kube-controller-manager",
            [
                str(manager),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={_free_port()}",
                "--use-service-account-credentials=false",
                "--concurrent-gc-syncs=5",
                "--v=1",
            ],
        )
        # The ServiceAccount controller creating ``default`` shows the manager is working.
        self._wait(
            lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
            what="the controller manager (the default ServiceAccount)",
            component="kube-controller-manager",
            timeout=90,
        )

    def _wait(self, check: Any, *, what: str, component: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self._processes[component]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{component} exited ({process.returncode}):\n{self.log(component)}"
                )
            if check():
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"timed out after {timeout:.0f}s waiting for {what}:\n{self.log(component)}"
        )

    def _terminate(self, name: str) -> None:
        process = self._processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self, *, keep_files: bool = False) -> None:
        """Stop every component and delete the data (unless ``keep_files``)."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._terminate(name)
        if not keep_files:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- acting on the cluster ---------------------------------------------------

    @staticmethod
    def _path(
        api_version: str, plural: str, namespace: str | None = None, name: str | None = None
    ) -> str:
        base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        if namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{plural}"
        return base + (f"/{name}" if name else "")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One admin request; the response whatever its status."""
        with self.http() as client:
            return client.request(method, path, **kwargs)

    def get(self, path: str) -> dict[str, Any] | None:
        """``GET path`` as the admin; None on 404."""
        response = self.request("GET", path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def create(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``body`` (its ``apiVersion`` and namespace pick the path) as the admin."""
        path = self._path(body["apiVersion"], plural, body.get("metadata", {}).get("namespace"))
        response = self.request("POST", path, json=dict(body))
        if response.status_code >= 300:
            raise AssertionError(f"POST {path} -> {response.status_code}: {response.text}")
        return dict(response.json())

    def apply(self, documents: str | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Server-side apply YAML/JSON documents as the admin (what ``kubectl apply`` does)."""
        if isinstance(documents, str):
            items = [d for d in yaml.safe_load_all(documents) if d]
        elif isinstance(documents, Mapping):
            items = [documents]
        else:
            items = list(documents)
        for item in items:
            path = self._resource_path(item)
            response = self.request(
                "PATCH",
                path + "?fieldManager=kustos-tests&force=true",
                content=json.dumps(item),
                headers={"Content-Type": "application/apply-patch+yaml"},
            )
            if response.status_code >= 300:
                raise AssertionError(f"apply {path} -> {response.status_code}: {response.text}")

    def _resource_path(self, item: Mapping[str, Any]) -> str:
        """The object's URL path, with the plural found by API discovery."""
        api_version, kind = item["apiVersion"], item["kind"]
        discovery = self.get(
            f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        )
        assert discovery is not None, f"{api_version} is not served"
        for resource in discovery.get("resources", []):
            if resource.get("kind") == kind and "/" not in resource["name"]:
                namespace = (
                    item["metadata"].get("namespace") if resource.get("namespaced") else None
                )
                if resource.get("namespaced") and not namespace:
                    namespace = "default"
                return self._path(
                    api_version, resource["name"], namespace, item["metadata"]["name"]
                )
        raise AssertionError(f"{kind} is not served by {api_version}")

    def ensure_namespace(self, name: str) -> None:
        """Create the namespace if it does not exist."""
        if self.get(f"/api/v1/namespaces/{name}") is None:
            self.create(
                "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )

    def ensure_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        """Create the ServiceAccount (and its namespace) if missing; return it."""
        self.ensure_namespace(namespace)
        found = self.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")
        if found is not None:
            return found
        return self.create(
            "serviceaccounts",
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace},
            },
        )

    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        audiences: Sequence[str] = (),
        seconds: int = 3600,
        bound_pod: Mapping[str, str] | None = None,
    ) -> str:
        """A real ServiceAccount token from the TokenRequest API (creates the ServiceAccount if needed)."""
        self.ensure_service_account(namespace, name)
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        if bound_pod:
            spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", **bound_pod}
        response = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        if response.status_code >= 300:
            raise AssertionError(
                f"TokenRequest for {namespace}/{name} -> {response.status_code}: {response.text}"
            )
        return str(response.json()["status"]["token"])

    def service_account_kubeconfig(self, path: Path, namespace: str, name: str) -> Path:
        """A kubeconfig acting as a ServiceAccount (its TokenRequest token, namespace set)."""
        return self.token_kubeconfig(
            path, self.service_account_token(namespace, name), namespace=namespace
        )

    def kubectl(self, *args: str, input: str | None = None, kubeconfig: Path | None = None) -> str:
        """Run kubectl (from the assets or the PATH) against this cluster; its stdout."""
        program = _binary(self.assets, "kubectl")
        if program is None:
            pytest.skip("kubectl is not installed")
        result = subprocess.run(
            [str(program), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} -> {result.returncode}: {result.stderr}"
            )
        return result.stdout


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The session's shared control plane: etcd, kube-apiserver and the controller manager.

    Skips (with how to get the binaries) when ``KUBEBUILDER_ASSETS`` is unset.
    Tests share it: use your own namespaces and names.
    """
    assets = require_assets(controller_manager=True)
    plane = ControlPlane(assets, controller_manager=True)
    try:
        plane.start()
    except RuntimeError as exc:
        plane.stop()
        pytest.fail(f"the control plane did not start: {exc}")
    try:
        yield plane
    finally:
        plane.stop()
