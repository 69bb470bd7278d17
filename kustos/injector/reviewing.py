"""One AdmissionReview (``admission.k8s.io/v1``) in, one answer out: the injector's decision.

:func:`review` is pure. It reads the request, decides, and returns the
AdmissionReview the API server expects back, with the request's ``uid``:

* not a Pod ``CREATE``, no ``agent-inject: "true"``, or already injected
  (``agent-inject-status: injected``) → ``allowed: true`` and no patch, so a
  pod admitted twice (two webhooks, reinvocation, a re-created pod) is
  changed once;
* a pod to inject → ``allowed: true``, ``patchType: JSONPatch`` and the patch
  (base64), plus ``warnings`` for Vault annotations that are ignored;
* a bad annotation → ``allowed: false`` with ``status.code`` 400 and a
  message naming the annotation: the API server refuses the pod and shows the
  message to whoever created it (``admission webhook ... denied the request: ...``).

A body that is not an AdmissionReview raises :class:`ReviewError` (HTTP 400).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict

from kustos.errors import InvalidRequestError
from kustos.injector.annotations import (
    AnnotationError,
    already_injected,
    read_injection,
    wants_injection,
)
from kustos.injector.mutating import InjectorSettings, inject, patch_for

__all__ = ["AdmissionResponse", "Outcome", "ReviewError", "Verdict", "review"]

API_VERSION: Final = "admission.k8s.io/v1"

Outcome = Literal["injected", "skipped", "refused"]


class ReviewError(InvalidRequestError):
    """The body is not an ``admission.k8s.io/v1`` AdmissionReview with a request."""


class _Status(TypedDict):
    code: int
    message: str


class AdmissionResponse(TypedDict, total=False):
    """``response`` of an AdmissionReview (the fields the injector sets)."""

    uid: str
    allowed: bool
    patchType: str
    patch: str
    status: _Status
    warnings: list[str]


@dataclass(frozen=True)
class Verdict:
    """What :func:`review` decided, with the AdmissionReview to send back."""

    outcome: Outcome
    body: dict[str, Any]
    message: str = ""


def _request(document: Any) -> Mapping[str, Any]:
    if not isinstance(document, Mapping):
        raise ReviewError("the body is not a JSON object")
    if document.get("apiVersion") != API_VERSION or document.get("kind") != "AdmissionReview":
        raise ReviewError(
            f"expected apiVersion {API_VERSION} and kind AdmissionReview, got "
            f"{str(document.get('apiVersion'))[:64]!r} and {str(document.get('kind'))[:64]!r}"
        )
    request = document.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise ReviewError("the AdmissionReview has no request with a uid")
    return request


def _answer(response: AdmissionResponse) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": dict(response)}


def review(document: Any, settings: InjectorSettings) -> Verdict:
    """Decide on one AdmissionReview; raises :class:`ReviewError` if it is not one."""
    request = _request(document)
    uid = request["uid"]
    allowed: AdmissionResponse = {"uid": uid, "allowed": True}
    kind = request.get("kind") or {}
    pod = request.get("object")
    if (
        request.get("operation") != "CREATE"
        or not isinstance(kind, Mapping)
        or (kind.get("group"), kind.get("kind")) != ("", "Pod")
        or not isinstance(pod, Mapping)
    ):
        return Verdict("skipped", _answer(allowed))
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        if already_injected(annotations) or not wants_injection(annotations):
            return Verdict("skipped", _answer(allowed))
        injection = read_injection(annotations)
        changed = inject(pod, injection, settings)
    except AnnotationError as exc:
        message = f"kustos injector: {exc}"
        refused: AdmissionResponse = {
            "uid": uid,
            "allowed": False,
            "status": {"code": 400, "message": message},
        }
        return Verdict("refused", _answer(refused), message)
    patch = json.dumps(patch_for(pod, changed), separators=(",", ":")).encode()
    response: AdmissionResponse = {
        **allowed,
        "patchType": "JSONPatch",
        "patch": base64.b64encode(patch).decode(),
    }
    if injection.warnings:
        response["warnings"] = list(injection.warnings)
    return Verdict("injected", _answer(response))
