"""``kustos agent`` as the injector runs it, against a real server and the real kube-apiserver.

The ServiceAccount token comes from TokenRequest (audience ``kustos``); the
server's kubernetes auth checks it with a TokenReview. The tests then act as
people do, with the CLI: ``kustos kv put`` changes a file, ``kustos kv destroy``,
``kustos policy write`` (read taken away) and ``kustos token revoke`` each
remove files, SIGTERM cleans up. No value ever reaches the agent's log.
Speed ("within a second") is measured by ``bench/agent.py``, not asserted here.
"""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path

from tests.integration.agent.conftest import READ_POLICY, AgentEnv, wait_for
from tests.support.kubeauth import AUDIENCE, write_role


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_container_writes_files_with_mode_0400(env: AgentEnv, tmp_path: Path) -> None:
    p = env.prefix
    env.kustos("kv", "put", f"{p}/init/db", "user=app", "password=s3cr3t-init")
    template = tmp_path / "url.tmpl"
    template.write_text(
        f'{{{{- with secret "secret/data/{env.namespace}/init/db" -}}}}\n'
        "postgres://{{ .Data.data.user }}:{{ .Data.data.password }}@db:5432/app\n"
        "{{- end }}\n"
    )
    jinja = tmp_path / "env.tmpl"
    jinja.write_text("DB_USER={{ db.user }}\nDB_PASSWORD={{ secrets['db'].password }}\n")
    out = tmp_path / "out"
    out.mkdir()
    done = env.once(
        out,
        "--secret",
        f"db={p}/init/db",
        "--secret",
        f"pw=secret/data/{env.namespace}/init/db#password",
        "--template",
        f"url={template}",
        "--template",
        f"env={jinja}",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "db").read_text()) == {"user": "app", "password": "s3cr3t-init"}
    assert (out / "pw").read_text() == "s3cr3t-init"
    assert (out / "url").read_text() == "postgres://app:s3cr3t-init@db:5432/app\n"
    assert (out / "env").read_text() == "DB_USER=app\nDB_PASSWORD=s3cr3t-init\n"
    assert {f.name: _mode(f) for f in out.iterdir()} == dict.fromkeys(
        ("db", "pw", "url", "env"), 0o400
    )
    assert "s3cr3t-init" not in done.stderr


def test_init_container_fails_naming_what_and_leaves_nothing(env: AgentEnv, tmp_path: Path) -> None:
    env.kustos("kv", "put", f"{env.prefix}/init/ok", "k=v")
    out = tmp_path / "out"
    out.mkdir()
    done = env.once(
        out,
        "--secret",
        f"ok={env.prefix}/init/ok",
        "--secret",
        f"missing={env.prefix}/init/nope",
        "--secret",
        "forbidden=secret/elsewhere/db",
    )
    assert done.returncode == 1
    assert "missing" in done.stderr and "not found" in done.stderr
    assert "forbidden" in done.stderr and "not allowed" in done.stderr
    assert list(out.iterdir()) == []
    bad = env.once(out, "--secret", "../x=secret/a/b")
    assert bad.returncode == 2 and "not a file name" in bad.stderr


def test_sidecar_follows_kv_put_and_wipes_on_destroy(env: AgentEnv, tmp_path: Path) -> None:
    p = env.prefix
    env.kustos("kv", "put", f"{p}/app/db", "password=first-value")
    env.kustos("kv", "put", f"{p}/app/api", "key=api-key-1")
    marker = tmp_path / "exec-runs"
    agent = env.agent(
        "--secret",
        f"pw={p}/app/db#password",
        "--secret",
        f"api={p}/app/api",
        "--exec",
        f"sh -c 'echo run >> {marker}'",
    )
    wait_for(lambda: agent.text("pw") == "first-value", what="the first file")
    wait_for(agent.ready, what="readiness")
    assert _mode(agent.file("pw")) == 0o400
    assert json.loads(agent.text("api") or "{}") == {"key": "api-key-1"}
    wait_for(lambda: marker.exists(), what="--exec after the first render")

    env.kustos("kv", "put", f"{p}/app/db", "password=second-value")
    wait_for(lambda: agent.text("pw") == "second-value", what="the change to reach the file")
    assert _mode(agent.file("pw")) == 0o400
    wait_for(lambda: len(marker.read_text().splitlines()) >= 2, what="--exec after the change")

    env.kustos("kv", "destroy", "--versions", "2", f"{p}/app/db")
    wait_for(lambda: not agent.file("pw").exists(), what="destroy to remove the file")
    assert agent.text("api") is not None  # the other secret's file stays
    assert agent.get("/readyz").status_code == 503
    metrics = agent.get("/metrics").text
    assert 'kustos_agent_removals_total{reason="gone"} 1.0' in metrics
    assert 'kustos_agent_renders_total{file="pw"} 2.0' in metrics

    env.kustos("kv", "put", f"{p}/app/db", "password=third-value")  # a new version comes back
    wait_for(lambda: agent.text("pw") == "third-value", what="the new version")
    assert agent.stop() == 0
    log = agent.log()
    assert "removed pw" in log and "not found" in log
    for value in ("first-value", "second-value", "third-value", "api-key-1"):
        assert value not in log


def test_sidecar_wipes_when_a_policy_takes_read_away(env: AgentEnv, tmp_path: Path) -> None:
    p = env.prefix
    env.kustos("kv", "put", f"{p}/pol/db", "password=policy-value")
    env.kustos("kv", "put", f"{p}/keep/api", "key=kept")
    agent = env.agent("--secret", f"db={p}/pol/db#password", "--secret", f"api={p}/keep/api#key")
    wait_for(lambda: agent.text("db") == "policy-value", what="the first file")
    narrowed = tmp_path / "narrowed.hcl"
    narrowed.write_text(
        f'path "secret/data/{env.namespace}/keep/*" {{\n  capabilities = ["read"]\n}}\n'
    )
    restored = tmp_path / "restored.hcl"
    restored.write_text(READ_POLICY.format(ns=env.namespace))
    try:
        env.kustos("policy", "write", "app-read", str(narrowed))
        wait_for(lambda: not agent.file("db").exists(), what="the policy change to remove the file")
        assert agent.text("api") == "kept"
        assert "removed db" in agent.log() and "not allowed" in agent.log()
    finally:
        env.kustos("policy", "write", "app-read", str(restored))
    wait_for(lambda: agent.text("db") == "policy-value", what="read given back")
    agent.stop()
    assert "policy-value" not in agent.log()


def test_sidecar_wipes_when_its_token_is_revoked(env: AgentEnv) -> None:
    p = env.prefix
    env.kustos("kv", "put", f"{p}/rev/db", "password=revoked-value")
    agent = env.agent("--secret", f"db={p}/rev/db#password", "--secret", f"all={p}/rev/db")
    wait_for(lambda: agent.text("db") == "revoked-value", what="the first file")
    wait_for(lambda: agent.text("all") is not None, what="the second file")
    env.kustos("token", "revoke", "--accessor", agent.accessor())
    wait_for(
        lambda: not agent.file("db").exists() and not agent.file("all").exists(),
        what="revocation to remove every file",
    )
    ready = agent.get("/readyz")
    assert ready.status_code == 503 and "revoked" in ready.text
    env.kustos("kv", "put", f"{p}/rev/db", "password=after-revocation")
    assert agent.process.poll() is None  # still running, reporting not ready
    assert not agent.file("db").exists()
    assert agent.stop() == 0
    log = agent.log()
    assert "access revoked" in log
    assert "revoked-value" not in log and "after-revocation" not in log


def test_sigterm_removes_what_the_sidecar_wrote(env: AgentEnv) -> None:
    env.kustos("kv", "put", f"{env.prefix}/term/db", "password=term-value")
    agent = env.agent("--secret", f"db={env.prefix}/term/db", listen=False)
    wait_for(lambda: agent.text("db") is not None, what="the file")
    assert agent.stop(signal.SIGTERM) == 0
    assert list(agent.directory.iterdir()) == []
    assert "stopping: removed 1 file(s): db" in agent.log()


def test_bound_values_open_in_place_for_the_pod_only(env: AgentEnv, tmp_path: Path) -> None:
    ns = env.namespace
    mine = env.kustos(
        "write", "sys/bound/encrypt", f"namespace={ns}", "service_account=app",
        "plaintext=" + "Ym91bmQtdG8tYXBw",  # "bound-to-app"
        "-o", "json",
    )  # fmt: skip
    theirs = env.kustos(
        "write", "sys/bound/encrypt", f"namespace={ns}", "service_account=web",
        "plaintext=" + "Ym91bmQtdG8td2Vi", "-o", "json",
    )  # fmt: skip
    mine_text = json.loads(mine.stdout)["ciphertext"]
    theirs_text = json.loads(theirs.stdout)["ciphertext"]
    env.kustos("kv", "put", f"{env.prefix}/bound/db", f"password={mine_text}", "user=app")
    env.kustos("kv", "put", f"{env.prefix}/bound/web", f"password={theirs_text}")
    out = tmp_path / "out"
    out.mkdir()
    done = env.once(
        out,
        "--secret",
        f"pw={env.prefix}/bound/db#password",
        "--secret",
        f"all={env.prefix}/bound/db",
    )
    assert done.returncode == 0, done.stderr
    assert (out / "pw").read_text() == "bound-to-app"
    assert json.loads((out / "all").read_text()) == {"password": "bound-to-app", "user": "app"}
    refused = env.once(tmp_path, "--secret", f"web={env.prefix}/bound/web#password")
    assert refused.returncode == 1
    assert "bound to service account" in refused.stderr and "key 'password'" in refused.stderr
    assert "bound-to-web" not in refused.stderr


def test_sidecar_renews_its_token_then_logs_in_again(env: AgentEnv) -> None:
    write_role(
        env.server.addr,
        env.server.root_token,
        "short",
        namespaces=[env.namespace],
        service_accounts=["app"],
        policies=["app-read"],
        ttl="6s",
        max_ttl="9s",
    )
    env.kustos("kv", "put", f"{env.prefix}/short/db", "password=before-relogin")
    agent = env.agent("--secret", f"db={env.prefix}/short/db#password", role="short")
    wait_for(lambda: agent.text("db") == "before-relogin", what="the first file")
    # renewed at 4 s (TTL 6 s), then refused more than the 9 s max: a new login, a new stream
    wait_for(
        lambda: "renewed the token" in agent.log() and agent.log().count("logged in at") >= 2,
        what="a renewal and a second login",
    )
    env.kustos("kv", "put", f"{env.prefix}/short/db", "password=after-relogin")
    wait_for(lambda: agent.text("db") == "after-relogin", what="a change after the new login")
    assert agent.ready()
    assert agent.stop() == 0
    assert "removed db" not in agent.log()  # the old token's expiry wiped nothing


def test_a_uid_pinned_value_is_wiped_once_its_account_is_recreated(env: AgentEnv) -> None:
    ns, account = env.namespace, "pinned"
    plane = env.control_plane
    plane.ensure_service_account(ns, account)
    write_role(
        env.server.addr,
        env.server.root_token,
        account,
        namespaces=[ns],
        service_accounts=[account],
        policies=["app-read"],
    )
    jwt_file = env.base / "pinned-token"
    jwt_file.write_text(plane.service_account_token(ns, account, audiences=[AUDIENCE]))
    sealed = env.kustos(
        "write", "sys/bound/encrypt", f"namespace={ns}", f"service_account={account}",
        "plaintext=" + "cGlubmVkLXZhbHVl",  # "pinned-value"
        "bind_uid=true", "-o", "json",
    )  # fmt: skip
    text = json.loads(sealed.stdout)["ciphertext"]
    assert f"{ns}/{account}/" in text  # pinned to the account's UID
    env.kustos("kv", "put", f"{env.prefix}/pinned/db", f"password={text}", "rev=1")
    agent = env.agent(
        "--secret", f"pw={env.prefix}/pinned/db#password", role=account, jwt_file=jwt_file
    )
    wait_for(lambda: agent.text("pw") == "pinned-value", what="the pinned value opened")
    path = f"/api/v1/namespaces/{ns}/serviceaccounts/{account}"
    assert plane.request("DELETE", path).status_code == 200
    plane.ensure_service_account(ns, account)  # same name, a new UID
    # the sidecar's Kustos token still names the old UID; its next read must not open the value
    env.kustos("kv", "put", f"{env.prefix}/pinned/db", f"password={text}", "rev=2")
    wait_for(lambda: agent.text("pw") is None, what="the file removed")
    log = agent.log()
    assert "removed pw" in log and "was deleted and recreated" in log
    assert "pinned-value" not in log
    assert agent.stop() == 0
