"""The database secrets engine against a real PostgreSQL and a real ``kustos server``, driven by hvac.

PostgreSQL runs with password authentication for every role but its
superuser, so a test can see a credential work (``psycopg.connect`` with it)
and then stop working: after ``sys/leases/revoke``, after the lease ends,
after the token that asked for it is revoked, after a static role rotates.
Timing is never asserted: tests poll for the outcome with a generous limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import hvac
import psycopg
import pytest
import yaml

from kustos.client.events import subscribe
from kustos.sensitive import Sensitive
from tests.support.postgres import PostgresServer, find_pg_bin
from tests.support.server import RunningServer, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

_WAIT = 30.0
PLUGIN = "postgresql-database-plugin"
CREATE = [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
    'GRANT CONNECT ON DATABASE app TO "{{name}}";',
]


class Database:
    """The PostgreSQL server and the root user Kustos connects as."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.root_user = "vaultroot"
        self.root_password = "root-" + secrets.token_hex(12)

    @property
    def port(self) -> int:
        return self.server.port

    def url(self) -> str:
        return f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{self.port}/app"

    def can_login(self, user: str, password: str) -> bool:
        try:
            with psycopg.connect(
                host="127.0.0.1",
                port=self.port,
                user=user,
                password=password,
                dbname="app",
                connect_timeout=5,
            ) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def admin(self, statement: str) -> None:
        with psycopg.connect(self.server.url("app"), autocommit=True) as conn:
            conn.execute(statement.encode())

    def role_exists(self, user: str) -> bool:
        with psycopg.connect(self.server.url("app"), autocommit=True) as conn:
            row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        return row is not None


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL binaries not found (run `make system-deps`)")
    server = PostgresServer(bin_dir, password_auth=True)
    try:
        server.start()
        server.create_database("app")
        db = Database(server)
        db.admin(f"CREATE ROLE {db.root_user} WITH LOGIN SUPERUSER PASSWORD '{db.root_password}'")
        yield db
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("kustos-db")) as running:
        yield running


def _client(server: RunningServer, token: str | None = None) -> hvac.Client:
    return hvac.Client(url=server.addr, token=token or server.root_token)


@pytest.fixture(scope="module")
def vault(server: RunningServer, database: Database) -> Iterator[hvac.Client]:
    """hvac, root token, with ``database/`` mounted and connection ``pg`` configured."""
    client = _client(server)
    client.sys.enable_secrets_engine("database", path="database")
    client.secrets.database.configure(
        name="pg",
        plugin_name=PLUGIN,
        allowed_roles=["app", "short", "static-*"],
        connection_url=database.url(),
        username=database.root_user,
        password=database.root_password,
    )
    client.secrets.database.create_role(
        name="app", db_name="pg", creation_statements=CREATE, default_ttl="1h", max_ttl="24h"
    )
    client.secrets.database.create_role(
        name="short", db_name="pg", creation_statements=CREATE, default_ttl=3, max_ttl=60
    )
    try:
        yield client
    finally:
        client.adapter.close()


def _eventually(check: Callable[[], bool], *, what: str, limit: float = _WAIT) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {limit} s: {what}")


def test_creds_log_in_and_revoke_drops_the_user(vault: hvac.Client, database: Database) -> None:
    answer = vault.secrets.database.generate_credentials(name="app")
    user, password = answer["data"]["username"], answer["data"]["password"]
    assert answer["lease_id"].startswith("database/creds/app/")
    assert answer["renewable"] is True
    assert 3500 <= answer["lease_duration"] <= 3600
    assert user.startswith("v-root-app-")
    assert database.can_login(user, password)

    lookup = vault.sys.read_lease(answer["lease_id"])["data"]
    assert lookup["id"] == answer["lease_id"]
    assert lookup["renewable"] is True

    vault.sys.revoke_lease(answer["lease_id"])
    assert not database.can_login(user, password)
    assert not database.role_exists(user)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.sys.read_lease(answer["lease_id"])


def test_lease_expiry_drops_the_user(vault: hvac.Client, database: Database) -> None:
    answer = vault.secrets.database.generate_credentials(name="short")
    user, password = answer["data"]["username"], answer["data"]["password"]
    assert answer["lease_duration"] == 3
    assert database.can_login(user, password)
    _eventually(lambda: not database.role_exists(user), what="the expired user is dropped")
    assert not database.can_login(user, password)


def test_renew_extends_up_to_max_ttl_and_list(vault: hvac.Client, database: Database) -> None:
    answer = vault.secrets.database.generate_credentials(name="short")
    renewed = vault.sys.renew_lease(answer["lease_id"], increment=30)
    assert renewed["lease_id"] == answer["lease_id"]
    assert 25 <= renewed["lease_duration"] <= 30
    capped = vault.sys.renew_lease(answer["lease_id"], increment=3600)
    assert capped["lease_duration"] <= 60  # the role's max_ttl
    suffix = answer["lease_id"].rsplit("/", 1)[1]
    assert suffix in vault.sys.list_leases("database/creds/short/")["data"]["keys"]
    vault.sys.revoke_prefix("database/creds/short")
    assert not database.role_exists(answer["data"]["username"])


def test_revoking_a_token_drops_its_and_its_childrens_users(
    vault: hvac.Client, server: RunningServer, database: Database
) -> None:
    vault.sys.create_or_update_policy(
        "db-app",
        'path "database/creds/app" { capabilities = ["read"] }\n'
        'path "auth/token/create" { capabilities = ["update"] }',
    )
    parent = vault.auth.token.create(policies=["db-app"], ttl="1h")["auth"]["client_token"]
    parent_client = _client(server, parent)
    child = parent_client.auth.token.create(policies=["db-app"], ttl="1h")["auth"]["client_token"]
    child_client = _client(server, child)
    try:
        mine = parent_client.secrets.database.generate_credentials(name="app")["data"]
        theirs = child_client.secrets.database.generate_credentials(name="app")["data"]
        assert database.can_login(mine["username"], mine["password"])
        assert database.can_login(theirs["username"], theirs["password"])
        vault.auth.token.revoke(parent)
        assert not database.can_login(mine["username"], mine["password"])
        assert not database.can_login(theirs["username"], theirs["password"])
    finally:
        parent_client.adapter.close()
        child_client.adapter.close()


def test_static_role_rotates_on_schedule(vault: hvac.Client, database: Database) -> None:
    database.admin("CREATE ROLE static_app WITH LOGIN PASSWORD 'initial-password'")
    assert database.can_login("static_app", "initial-password")
    vault.secrets.database.create_static_role(
        name="static-app",
        db_name="pg",
        username="static_app",
        rotation_statements=["ALTER ROLE \"{{name}}\" WITH PASSWORD '{{password}}';"],
        rotation_period=5,
    )
    first = vault.secrets.database.get_static_credentials(name="static-app")["data"]
    assert first["username"] == "static_app"
    assert first["rotation_period"] == 5
    assert not database.can_login("static_app", "initial-password")  # rotated on creation
    assert database.can_login("static_app", first["password"])
    role = vault.secrets.database.read_static_role(name="static-app")["data"]
    assert role["username"] == "static_app" and "password" not in role

    def rotated() -> bool:
        current = vault.secrets.database.get_static_credentials(name="static-app")["data"]
        return bool(current["password"] != first["password"])

    _eventually(rotated, what="the static role's password rotates on its schedule")
    second = vault.secrets.database.get_static_credentials(name="static-app")["data"]
    assert database.can_login("static_app", second["password"])
    assert not database.can_login("static_app", first["password"])

    vault.secrets.database.rotate_static_role_credentials(name="static-app")
    third = vault.secrets.database.get_static_credentials(name="static-app")["data"]
    assert third["password"] != second["password"]
    assert database.can_login("static_app", third["password"])
    vault.secrets.database.delete_static_role(name="static-app")


def test_creds_and_renewal_are_audited_before_they_commit(
    vault: hvac.Client, server: RunningServer, database: Database
) -> None:
    """With an audit device, issuing credentials and renewing their lease declare their answer
    before they commit (neither is counted in ``kustos_audit_unreserved_commits_total``, see
    kustos.server.committing)."""
    audit_log = server.data_dir.parent / "renew-audit.log"
    vault.sys.enable_audit_device("file", path="renew-audit", options={"file_path": str(audit_log)})
    try:
        answer = vault.secrets.database.generate_credentials(name="short")
        renewed = vault.sys.renew_lease(answer["lease_id"], increment=30)
        assert renewed["lease_id"] == answer["lease_id"]
        vault.sys.revoke_lease(answer["lease_id"])
    finally:
        vault.sys.disable_audit_device("renew-audit")
    metrics = httpx.get(f"{server.addr}/metrics", timeout=30).text
    unreserved = [
        line
        for line in metrics.splitlines()
        if line.startswith("kustos_audit_unreserved_commits_total")
        and ("renew" in line or "creds" in line)
    ]
    assert unreserved == []
    assert "sys/leases/renew" in audit_log.read_text()


def test_root_credential_is_never_returned_and_rotates(
    vault: hvac.Client, server: RunningServer, database: Database
) -> None:
    audit_log = server.data_dir.parent / "db-audit.log"
    vault.sys.enable_audit_device("file", path="db-audit", options={"file_path": str(audit_log)})
    vault.secrets.database.configure(  # the root password passes through the audited API again
        name="pg",
        plugin_name=PLUGIN,
        connection_url=database.url(),
        username=database.root_user,
        password=database.root_password,
    )
    config = vault.secrets.database.read_connection(name="pg")["data"]
    assert config["plugin_name"] == PLUGIN
    assert config["connection_details"]["username"] == database.root_user
    assert database.root_password not in str(config)
    assert "password" not in config["connection_details"]
    stored = b"".join(p.read_bytes() for p in server.data_dir.rglob("*") if p.is_file())
    assert database.root_password.encode() not in stored

    vault.secrets.database.rotate_root_credentials(name="pg")
    assert not database.can_login(database.root_user, database.root_password)
    creds = vault.secrets.database.generate_credentials(name="app")  # still connects
    assert database.can_login(creds["data"]["username"], creds["data"]["password"])
    vault.sys.revoke_lease(creds["lease_id"])
    vault.sys.disable_audit_device("db-audit")
    logged = audit_log.read_text()
    assert "database/creds/app" in logged and "rotate-root" in logged
    assert database.root_password not in logged
    assert creds["data"]["password"] not in logged
    server_log = server.stderr() + server.stdout()
    assert database.root_password not in server_log
    assert creds["data"]["password"] not in server_log


def test_revocation_is_an_event_on_the_change_stream(
    vault: hvac.Client, server: RunningServer
) -> None:
    answer = vault.secrets.database.generate_credentials(name="app")
    seen: list[str] = []
    with (
        httpx.Client(base_url=server.addr, timeout=15.0) as http,
        http.stream(
            "GET",
            "/v1/sys/events/subscribe",
            params={"prefix": "database/creds/app", "heartbeat": "1"},
            headers={"X-Vault-Token": server.root_token},
        ) as stream,
    ):
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("event: ready"):
                break
        vault.sys.revoke_lease(answer["lease_id"])
        for line in lines:
            seen.append(line)
            if line.startswith("data:") and answer["lease_id"] in line:
                break
    event = next(line for line in seen if answer["lease_id"] in line)
    assert '"kind":"revoke"' in event
    assert '"mount":"database/"' in event
    assert '"path":"creds/app"' in event


def test_a_role_whose_statements_fail_answers_400_and_leaves_no_lease(
    vault: hvac.Client, server: RunningServer
) -> None:
    vault.secrets.database.create_role(
        name="static-broken", db_name="pg", creation_statements=["CREATE ROLE"]
    )
    answer = httpx.get(
        f"{server.addr}/v1/database/creds/static-broken",
        headers={"X-Vault-Token": server.root_token},
        timeout=10.0,
    )
    assert answer.status_code == 400, answer.text
    assert "create user failed: syntax error" in answer.json()["errors"][0]
    try:
        roles_with_leases = vault.sys.list_leases("database/creds/")["data"]["keys"]
    except hvac.exceptions.InvalidPath:  # no lease at all right now
        roles_with_leases = []
    assert "static-broken/" not in roles_with_leases


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("database/config/x", {"plugin_name": "mysql-database-plugin"}, "not available"),
        ("database/config/x", {"plugin_name": PLUGIN, "connection_url": 5}, "connection_url"),
        ("database/config/x", {"plugin_name": PLUGIN, "connection_url": "a", "bogus": 1}, "bogus"),
        (
            "database/config/x",
            {
                "plugin_name": PLUGIN,
                "connection_url": "postgresql://h/db",
                "max_open_connections": 10**9,
            },
            "max_open_connections",
        ),
        ("database/roles/r", {"db_name": "pg"}, "creation_statements"),
        (
            "database/roles/r",
            {"db_name": "pg", "creation_statements": ["x"], "default_ttl": "2h", "max_ttl": "1h"},
            "default_ttl",
        ),
        (
            "database/roles/r",
            {"db_name": "pg", "creation_statements": "x", "max_ttl": "-1s"},
            "max_ttl",
        ),
        ("database/roles/bad name", {"db_name": "pg", "creation_statements": "x"}, "role name"),
        (
            "database/static-roles/static-x",
            {"db_name": "pg", "username": "u", "rotation_period": "1s"},
            "rotation_period",
        ),
        (
            "database/static-roles/static-x",
            {"db_name": "pg", "username": 'bad"user', "rotation_period": "1h"},
            "username",
        ),
        (
            "database/static-roles/static-nouser",
            {"db_name": "pg", "username": "nobody_here", "rotation_period": "1h"},
            "does not exist",
        ),
        ("sys/leases/lookup", {"lease_id": "../etc"}, "lease_id"),
        (
            "sys/leases/renew",
            {"lease_id": "database/creds/app/x", "increment": "soon"},
            "increment",
        ),
    ],
)
def test_bad_input_is_refused_with_a_named_field(
    vault: hvac.Client, server: RunningServer, path: str, body: dict[str, object], expected: str
) -> None:
    answer = httpx.put(
        f"{server.addr}/v1/{path}",
        json=body,
        headers={"X-Vault-Token": server.root_token},
        timeout=10.0,
    )
    assert answer.status_code == 400, answer.text
    assert expected in answer.json()["errors"][0]


def test_restart_revokes_the_expired_lease_at_start_and_the_other_at_its_time(
    tmp_path: Path, database: Database
) -> None:
    with start_server(tmp_path / "restart") as running:
        client = _client(running)
        try:
            client.sys.enable_secrets_engine("database", path="database")
            client.secrets.database.configure(
                name="pg2",
                plugin_name=PLUGIN,
                allowed_roles=["*"],
                connection_url=database.url(),
                username="postgres",
                password="unused-under-trust",
                verify_connection=False,
            )
            # the superuser logs in without a password (trust): a root password that restarts keep
            client.secrets.database.create_role(
                name="soon", db_name="pg2", creation_statements=CREATE, default_ttl=2, max_ttl=60
            )
            client.secrets.database.create_role(
                name="later", db_name="pg2", creation_statements=CREATE, default_ttl=45, max_ttl=60
            )
            soon = client.secrets.database.generate_credentials(name="soon")["data"]
            later = client.secrets.database.generate_credentials(name="later")["data"]
        finally:
            client.adapter.close()
        running.stop()
        time.sleep(3.0)  # the first lease ends while the server is down
        # nobody dropped the user (PostgreSQL itself refuses it now: VALID UNTIL has passed)
        assert database.role_exists(soon["username"])
        running.start()
        _eventually(
            lambda: not database.role_exists(soon["username"]),
            what="the lease that ended while the server was down is revoked at start",
        )
        assert database.can_login(later["username"], later["password"])
        # its 45 s ttl outlasts a slow restart on a loaded host (15 s did not, once)
        _eventually(
            lambda: not database.role_exists(later["username"]),
            what="the other lease is revoked at its end",
            limit=_WAIT + 45,
        )


def test_cli_reads_creds_and_manages_the_lease(
    vault: hvac.Client, server: RunningServer, database: Database, tmp_path: Path
) -> None:
    from tests.integration.cli._support import Cli, cli_env

    cli = Cli(env=cli_env(server, tmp_path))
    read = json.loads(cli.ok("read", "database/creds/app", "-o", "json").stdout)
    assert read["lease_id"].startswith("database/creds/app/")
    assert read["lease_renewable"] is True
    assert database.can_login(read["username"], read["password"])
    lease_id = read["lease_id"]
    looked = yaml.safe_load(cli.ok("lease", "lookup", lease_id, "-o", "yaml").stdout)
    assert looked["id"] == lease_id
    renewed = json.loads(
        cli.ok("lease", "renew", "--increment", "2h", lease_id, "-o", "json").stdout
    )
    assert 7100 <= renewed["lease_duration"] <= 7200
    table = cli.ok("lease", "list", "database/creds/app").stdout
    assert lease_id.rsplit("/", 1)[1] in table
    cli.ok("lease", "revoke", lease_id)
    assert not database.can_login(read["username"], read["password"])
    cli.fails("lease", "lookup", lease_id)
    cli.fails("lease", "revoke", "--force", lease_id, code=2)


async def test_an_expired_lease_reaches_a_stream_subscriber(
    vault: hvac.Client, server: RunningServer
) -> None:
    async with httpx.AsyncClient(base_url=server.addr, timeout=30) as http:
        events = subscribe(http, prefix="database/creds/short", token=Sensitive(server.root_token))
        async with contextlib.aclosing(events):
            async with asyncio.timeout(_WAIT):
                assert (await anext(events)).type == "ready"
                answer = await asyncio.to_thread(
                    vault.secrets.database.generate_credentials, name="short"
                )
                event = await anext(events)
                while event.type != "change":
                    event = await anext(events)
    assert (event.kind, event.lease_id) == ("revoke", answer["lease_id"])
    assert (event.mount, event.path, event.version) == ("database/", "creds/short", 0)
