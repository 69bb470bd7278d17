"""Finding and loading connections: kubeconfig forms, contexts, in-cluster, the lookup order.

These load files only (no API server); the real API server accepts what
they produce in tests/integration/kube/test_kube_real_cluster.py.
"""

from __future__ import annotations

import base64
import datetime
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kustos.errors import ConfigError
from kustos.kube import Connection, StaticToken, find_connection, load_in_cluster, load_kubeconfig
from kustos.sensitive import Sensitive

CA = b"-----BEGIN CERTIFICATE-----\nnot really a certificate\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kubeconfig(path: Path, users: dict[str, dict[str, Any]], **extra: Any) -> Path:
    contexts = [
        {"name": name, "context": {"cluster": "c", "user": name, **extra.get(name, {})}}
        for name in users
    ]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://127.0.0.1:6443/",
                            "certificate-authority-data": _b64(CA),
                        },
                    }
                ],
                "users": [{"name": name, "user": user} for name, user in users.items()],
                "contexts": contexts,
                "current-context": next(iter(users)),
            }
        )
    )
    return path


async def test_client_certificate_data_becomes_private_files(tmp_path: Path) -> None:
    path = _kubeconfig(
        tmp_path / "config",
        {"admin": {"client-certificate-data": _b64(CERT), "client-key-data": _b64(KEY)}},
    )
    connection = await load_kubeconfig(path=str(path))
    assert connection.server == "https://127.0.0.1:6443"
    assert connection.ca_path and Path(connection.ca_path).read_bytes() == CA
    assert connection.certificate_path and Path(connection.certificate_path).read_bytes() == CERT
    assert connection.private_key_path
    key_file = Path(connection.private_key_path)
    assert key_file.read_bytes() == KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert await connection.authorization() is None
    login = await connection.login()
    assert login.token is None and login.scheme is None


async def test_token_and_context_namespace(tmp_path: Path) -> None:
    path = _kubeconfig(
        tmp_path / "config",
        {"first": {"token": "t-first"}, "second": {"token": "t-second"}},
        second={"namespace": "team-b"},
    )
    first = await load_kubeconfig(path=str(path))
    assert await first.authorization() == Sensitive("Bearer t-first")
    assert first.default_namespace is None
    second = await load_kubeconfig(path=str(path), context="second")
    assert await second.authorization() == Sensitive("Bearer t-second")
    assert second.default_namespace == "team-b"
    login = await second.login()
    assert login.scheme == "Bearer" and login.token == Sensitive("t-second")
    assert "t-second" not in repr(second) and "t-second" not in repr(login)


async def test_token_file_is_read_again_on_refresh(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old")
    path = _kubeconfig(tmp_path / "config", {"u": {"tokenFile": str(token_file)}})
    connection = await load_kubeconfig(path=str(path))
    assert await connection.authorization() == Sensitive("Bearer old")
    token_file.write_text("new")
    await connection.refresh(rejected=Sensitive("Bearer someone else's"))
    assert await connection.authorization() == Sensitive("Bearer old"), (
        "a refusal of a token we no longer send must not reload"
    )
    await connection.refresh(rejected=Sensitive("Bearer old"))
    assert await connection.authorization() == Sensitive("Bearer new")


def _exec_plugin(tmp_path: Path, *, expires: datetime.datetime | None) -> tuple[Path, Path]:
    """A plugin printing an ExecCredential with the token in ``token``; it counts its runs."""
    runs = tmp_path / "runs"
    script = tmp_path / "plugin.py"
    status: dict[str, Any] = {}
    if expires is not None:
        status["expirationTimestamp"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    script.write_text(
        "import json, pathlib\n"
        f"here = pathlib.Path({str(tmp_path)!r})\n"
        "runs = here / 'runs'\n"
        "runs.write_text(str(int(runs.read_text() or 0) + 1) if runs.exists() else '1')\n"
        f"status = {json.dumps(status)}\n"
        "status['token'] = (here / 'token').read_text()\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
        "'kind': 'ExecCredential', 'status': status}))\n"
    )
    (tmp_path / "token").write_text("exec-1")
    path = _kubeconfig(
        tmp_path / "config",
        {
            "u": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(script)],
                    "interactiveMode": "Never",
                }
            }
        },
    )
    return path, runs


async def test_exec_plugin_runs_once_then_again_when_refused(tmp_path: Path) -> None:
    path, runs = _exec_plugin(tmp_path, expires=None)
    connection = await load_kubeconfig(path=str(path))
    for _ in range(3):
        assert await connection.authorization() == Sensitive("Bearer exec-1")
    assert runs.read_text() == "1", "a credential without expiry is reused until refused"
    (tmp_path / "token").write_text("exec-2")
    await connection.refresh(rejected=Sensitive("Bearer exec-1"))
    assert await connection.authorization() == Sensitive("Bearer exec-2")
    assert runs.read_text() == "2"


async def test_exec_plugin_runs_again_when_expired(tmp_path: Path) -> None:
    soon = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(seconds=5)
    path, runs = _exec_plugin(tmp_path, expires=soon)
    connection = await load_kubeconfig(path=str(path))
    login = await connection.login()
    assert login.expiration is not None
    assert abs((login.expiration - soon).total_seconds()) < 1.5
    # Within the skew before expiry: the next header comes from a new run.
    (tmp_path / "token").write_text("exec-2")
    assert await connection.authorization() == Sensitive("Bearer exec-2")
    assert int(runs.read_text()) >= 2


async def test_bad_kubeconfigs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        await load_kubeconfig(path=str(tmp_path / "missing"))
    path = _kubeconfig(tmp_path / "config", {"u": {"token": "t"}})
    with pytest.raises(ConfigError, match="nope"):
        await load_kubeconfig(path=str(path), context="nope")
    garbage = tmp_path / "garbage"
    garbage.write_text("clusters: [")
    with pytest.raises(ConfigError, match="garbage"):
        await load_kubeconfig(path=str(garbage))


def _service_account_dir(tmp_path: Path, token: str = "sa-token") -> Path:  # noqa: S107
    directory = tmp_path / "sa"
    directory.mkdir()
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(CA)
    (directory / "namespace").write_text("kustos-system\n")
    return directory


IN_POD = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}


async def test_in_cluster_token_namespace_and_rotation(tmp_path: Path) -> None:
    directory = _service_account_dir(tmp_path)
    connection = await load_in_cluster(environ=IN_POD, directory=directory)
    assert connection.server == "https://10.0.0.1:443"
    assert connection.ca_path == str(directory / "ca.crt")
    assert connection.default_namespace == "kustos-system"
    assert await connection.authorization() == Sensitive("Bearer sa-token")
    (directory / "token").write_text("rotated")
    await connection.refresh(rejected=Sensitive("Bearer sa-token"))
    assert await connection.authorization() == Sensitive("Bearer rotated")


async def test_lookup_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    _kubeconfig(home / ".kube" / "config", {"home": {"token": "from-home"}})
    flag = _kubeconfig(tmp_path / "flag", {"flag": {"token": "from-flag"}})
    env = _kubeconfig(tmp_path / "env", {"env": {"token": "from-env"}})
    directory = _service_account_dir(tmp_path, token="from-pod")

    async def found(kubeconfig: str | None, environ: dict[str, str]) -> Sensitive[str] | None:
        connection = await find_connection(
            kubeconfig=kubeconfig, environ=environ, home=home, service_account_dir=directory
        )
        return await connection.authorization()

    everything = {**IN_POD, "KUBECONFIG": str(env)}
    assert await found(str(flag), everything) == Sensitive("Bearer from-flag")
    assert await found(None, everything) == Sensitive("Bearer from-env")
    assert await found(None, IN_POD) == Sensitive("Bearer from-pod")
    assert await found(None, {}) == Sensitive("Bearer from-home")
    with pytest.raises(ConfigError, match="no Kubernetes credentials"):
        await find_connection(environ={}, home=tmp_path / "nobody", service_account_dir=directory)
    with pytest.raises(ConfigError, match="--context"):
        await find_connection(
            context="x", environ=IN_POD, home=tmp_path / "nobody", service_account_dir=directory
        )


async def test_static_token_and_plain_connection() -> None:
    plain = Connection(server="http://127.0.0.1:1")
    assert plain.ssl_context() is True and await plain.authorization() is None
    fixed = Connection(server="http://x", credentials=StaticToken(Sensitive("abc")))
    assert await fixed.authorization() == Sensitive("Bearer abc")
    assert "abc" not in repr(fixed)
