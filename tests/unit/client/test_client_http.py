"""Client behaviour that needs no server: path building, local validation, unreachable servers, masking."""

from __future__ import annotations

import socket

import pytest

from kustos.client import KustosClient, ServerUnreachableError
from kustos.client._http import join_path
from kustos.errors import ConfigError, InvalidRequestError
from kustos.sensitive import Sensitive


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_join_path_trims_slashes_and_quotes_segments() -> None:
    assert join_path("secret", "data", "/app/db/") == "secret/data/app/db"
    assert join_path("secret", "metadata", "") == "secret/metadata"
    assert join_path("secret", "data", "a b/c?d") == "secret/data/a%20b/c%3Fd"


@pytest.mark.parametrize("bad", ["../etc", "app/../x", "./a"])
def test_join_path_refuses_dot_segments(bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="invalid path segment"):
        join_path("secret", "data", bad)


def test_connection_refused_names_the_address() -> None:
    address = f"http://127.0.0.1:{_closed_port()}"
    with (
        KustosClient(address, "t", timeout=2.0) as client,
        pytest.raises(ServerUnreachableError) as info,
    ):
        client.sys.read_health_status()
    assert info.value.address == address
    assert address in str(info.value)
    assert "refused" in str(info.value)


def test_address_must_be_http_or_https() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        KustosClient("127.0.0.1:8200")


def test_missing_ca_file_is_a_config_error(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="cannot load CA certificate"):
        KustosClient("https://127.0.0.1:8200", ca_cert="/nonexistent/ca.pem")


def test_token_is_masked_in_repr() -> None:
    with KustosClient("http://127.0.0.1:8200", "s.very-secret-token") as client:
        assert "very-secret" not in repr(client)
        assert isinstance(client.token, Sensitive)
        assert client.token.reveal() == "s.very-secret-token"


def test_reason_must_be_printable_ascii_and_is_checked_before_sending() -> None:
    address = f"http://127.0.0.1:{_closed_port()}"
    with KustosClient(address, "t", timeout=2.0) as client:
        with pytest.raises(InvalidRequestError, match="printable ASCII"):
            client.kv_v2.create_or_update_secret("a", {"k": "v"}, reason="line\nbreak")
        with pytest.raises(InvalidRequestError, match="must not be empty"):
            client.kv_v2.create_or_update_secret("a", {"k": "v"}, reason="  ")


def test_versions_are_checked_before_sending() -> None:
    with KustosClient(f"http://127.0.0.1:{_closed_port()}", "t", timeout=2.0) as client:
        with pytest.raises(InvalidRequestError, match="at least one version"):
            client.kv_v2.destroy_versions("a", [])
        with pytest.raises(InvalidRequestError, match="start at 1"):
            client.kv_v2.delete_versions("a", [0])


def test_init_threshold_is_checked_before_sending() -> None:
    with KustosClient(f"http://127.0.0.1:{_closed_port()}", None, timeout=2.0) as client:
        with pytest.raises(InvalidRequestError, match="threshold"):
            client.sys.initialize(secret_shares=3, secret_threshold=4)
