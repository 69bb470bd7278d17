"""Injector benchmark: the admission latency ``kustos injector`` adds to a pod create, through a real API server.

What it measures (one bounded run, it stops by itself):

- pod ``POST`` latency through a real kube-apiserver + etcd, as the client
  sees it, in three interleaved series of ``--count`` creates each:
  ``baseline`` (a namespace no webhook selects), ``skipped`` (the webhook is
  called, the pod has no annotation, nothing is added) and ``injected`` (the
  webhook adds the agent: two containers, three volumes, the JSON patch);
  p50/p99 of each, and the p99 of the added time against the baseline
  (the floor every pod create pays, measured in the same run);
- the injector's own decision time per review, from its
  ``kustos_injector_admission_seconds`` histogram (mean).

The injector is ``kustos injector`` in a subprocess on a loopback HTTPS port,
registered with ``clientConfig.url`` and its ``caBundle`` (the API server
dials 127.0.0.1 only). No peer injector runs here (Vault's is a Go binary
that no package registry this project uses ships), so the comparison is
against the API server's own create path.

Run: ``KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh) .venv/bin/python bench/injector.py``
(``--count 300``, ``--json`` for machine-readable output).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.injector import register_webhook, running_injector  # noqa: E402
from tests.support.kube import ControlPlane, assets_dir  # noqa: E402

_ANNOTATIONS = {
    "kustos.io/agent-inject": "true",
    "kustos.io/role": "bench",
    "kustos.io/agent-inject-secret-db": "secret/data/bench/db",
    "kustos.io/agent-inject-secret-api": "secret/data/bench/api#key",
    "kustos.io/agent-inject-template-app.conf": (
        '{{ with secret "secret/data/bench/db" }}{{ .Data.data.password }}{{ end }}'
    ),
}


def _pod(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p-{uuid.uuid4().hex[:12]}", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _ms(value: float) -> float:
    return round(value * 1000, 2)


def run(count: int) -> dict[str, Any]:
    assets = assets_dir()
    if assets is None:
        raise SystemExit(
            "set KUBEBUILDER_ASSETS: export KUBEBUILDER_ASSETS=$(../shared/k8s/unpack.sh)"
        )
    plane = ControlPlane(assets)
    plane.start()
    try:
        for namespace in ("plain", "hooked"):
            plane.ensure_namespace(namespace)
            plane.ensure_service_account(namespace, "default")
        with tempfile.TemporaryDirectory(prefix="bench-injector-") as tmp:
            with (
                running_injector(plane, Path(tmp)) as injector,
                register_webhook(plane, injector, "hooked"),
            ):
                series: dict[str, list[float]] = {"baseline": [], "skipped": [], "injected": []}
                plans = {
                    "baseline": ("plain", {}),
                    "skipped": ("hooked", {}),
                    "injected": ("hooked", _ANNOTATIONS),
                }
                with plane.http() as client:
                    for _ in range(20):  # warm-up: connections, caches, the webhook's client
                        for namespace, annotations in plans.values():
                            client.post(
                                f"/api/v1/namespaces/{namespace}/pods", json=_pod(annotations)
                            )
                    before = injector.metrics()
                    for _ in range(count):
                        for name, (namespace, annotations) in plans.items():
                            body = _pod(annotations)
                            started = time.perf_counter()
                            response = client.post(
                                f"/api/v1/namespaces/{namespace}/pods", json=body
                            )
                            series[name].append(time.perf_counter() - started)
                            if response.status_code != 201:
                                raise SystemExit(f"{name}: {response.status_code} {response.text}")
                            injected = "initContainers" in response.json()["spec"]
                            if injected != (name == "injected"):
                                raise SystemExit(f"{name}: unexpected injection state")
                after = injector.metrics()
    finally:
        plane.stop()
    reviews = (
        after["kustos_injector_admission_seconds_count"]
        - before["kustos_injector_admission_seconds_count"]
    )
    decide = (
        after["kustos_injector_admission_seconds_sum"]
        - before["kustos_injector_admission_seconds_sum"]
    ) / reviews
    result: dict[str, Any] = {"count": count, "decision_mean_ms": _ms(decide)}
    for name, values in series.items():
        result[f"{name}_p50_ms"] = _ms(statistics.median(values))
        result[f"{name}_p99_ms"] = _ms(_percentile(values, 0.99))
    result["added_p50_ms"] = round(result["injected_p50_ms"] - result["baseline_p50_ms"], 2)
    result["added_p99_ms"] = round(result["injected_p99_ms"] - result["baseline_p99_ms"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="pod creates per series")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.count)
    if args.json:
        print(json.dumps(result))
        return
    print(f"pod creates per series:            {result['count']} (interleaved)")
    for name, label in (
        ("baseline", "no webhook (baseline)"),
        ("skipped", "webhook, not annotated"),
        ("injected", "webhook, injected"),
    ):
        print(
            f"{label + ':':35}p50 {result[f'{name}_p50_ms']} ms, p99 {result[f'{name}_p99_ms']} ms"
        )
    print(
        f"{'added by injection:':35}p50 {result['added_p50_ms']} ms, p99 {result['added_p99_ms']} ms"
    )
    print(f"{'injector decision (mean):':35}{result['decision_mean_ms']} ms")


if __name__ == "__main__":
    main()
