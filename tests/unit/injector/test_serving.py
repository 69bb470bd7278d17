"""The injector's HTTP surface: /mutate answers AdmissionReviews, /healthz, /metrics counts outcomes."""

from __future__ import annotations

import httpx

from kustos.injector import InjectorSettings
from kustos.injector.serving import InjectorMetrics, create_app

SETTINGS = InjectorSettings(address="https://kustos.example:8200")


def _review(annotations: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE",
            "namespace": "shop",
            "object": {
                "metadata": {"generateName": "app-", "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }


async def test_mutate_health_and_metrics() -> None:
    metrics = InjectorMetrics()
    transport = httpx.ASGITransport(app=create_app(SETTINGS, metrics=metrics))
    async with httpx.AsyncClient(transport=transport, base_url="https://injector") as client:
        await _exercise(client)


async def _exercise(client: httpx.AsyncClient) -> None:
    good = {
        "kustos.io/agent-inject": "true",
        "kustos.io/role": "shop",
        "kustos.io/agent-inject-secret-db": "secret/data/shop/db",
    }
    answer = await client.post("/mutate", json=_review(good))
    assert answer.status_code == 200
    assert answer.json()["response"]["patchType"] == "JSONPatch"
    refused = await client.post(
        "/mutate", json=_review({**good, "kustos.io/agent-inject": "maybe"})
    )
    assert refused.status_code == 200 and refused.json()["response"]["allowed"] is False
    assert (await client.post("/mutate", json=_review({}))).json()["response"]["allowed"] is True
    bad = await client.post("/mutate", content=b"not json")
    assert bad.status_code == 400 and bad.json() == {"errors": ["the body is not JSON"]}
    wrong = await client.post("/mutate", json={"kind": "Pod"})
    assert wrong.status_code == 400 and "AdmissionReview" in wrong.json()["errors"][0]
    assert (await client.get("/healthz")).text == "ok"
    text = (await client.get("/metrics")).text
    for outcome, count in (("injected", 1), ("refused", 1), ("skipped", 1), ("invalid", 2)):
        assert f'kustos_injector_admissions_total{{outcome="{outcome}"}} {count}.0' in text
    assert "kustos_injector_admission_seconds_count 3.0" in text
    assert (await client.get("/mutate")).status_code == 405
