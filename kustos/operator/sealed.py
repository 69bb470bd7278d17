"""The SealedSecret controller (``bitnami.com/v1alpha1`` and ``kustos.io/v1``): Git -> Secret.

The private-key operation happens in the Kustos server: the controller sends
the whole SealedSecret to ``POST /v1/sys/sealing/unseal``
(:class:`ServerUnsealer`) and gets the Secret manifest back; sealing keys
never reach the operator. Then, as Bitnami's controller does:

- a missing Secret is created, with an ownerReference to the SealedSecret
  (unless ``sealedsecrets.bitnami.com/skip-set-owner-references: "true"``);
- an existing Secret is updated only when the SealedSecret controls it, or it
  carries ``sealedsecrets.bitnami.com/managed: "true"`` (taken over: its data,
  labels and annotations are replaced) or ``sealedsecrets.bitnami.com/patch:
  "true"`` (our keys are merged in, its other keys stay);
- any other existing Secret is refused: condition ``Synced=False`` and a
  Warning event ``ErrUpdateFailed`` ("... already exists and is not managed
  by SealedSecret");
- events ``Unsealed`` / ``ErrUnsealFailed``; status ``observedGeneration``
  and condition ``Synced``;
- a deleted Secret the SealedSecret controls is recreated.

:func:`plan_sealed_secret` is the pure decision; :class:`SealedSecretController`
does the I/O. Nothing is written on the SealedSecret but its status.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import httpx

from kustos.errors import InvalidRequestError, KustosError, NotFoundError, PermissionDeniedError
from kustos.kube import SECRETS, Body, ConflictError, KubeClient, KubeError, Resource
from kustos.operator.bound import BoundOpener, contains_bound
from kustos.operator.syncing import SecretPlan
from kustos.sensitive import Sensitive

__all__ = [
    "ANNOTATION_MANAGED",
    "ANNOTATION_PATCH",
    "ANNOTATION_SKIP_OWNER",
    "SEALED_SECRETS",
    "NotManagedError",
    "SealedSecretController",
    "ServerUnsealer",
    "Unsealer",
    "plan_sealed_secret",
]

ANNOTATION_MANAGED: Final = "sealedsecrets.bitnami.com/managed"
ANNOTATION_PATCH: Final = "sealedsecrets.bitnami.com/patch"
ANNOTATION_SKIP_OWNER: Final = "sealedsecrets.bitnami.com/skip-set-owner-references"
SEALED_SECRETS: Final = (
    Resource("bitnami.com", "v1alpha1", "sealedsecrets", "SealedSecret"),
    Resource("kustos.io", "v1", "sealedsecrets", "SealedSecret"),
)
UNSEAL_PATH: Final = "/v1/sys/sealing/unseal"

_log = logging.getLogger("kustos.operator")


class NotManagedError(InvalidRequestError):
    """The target Secret exists and is neither controlled by the SealedSecret nor annotated managed/patch."""


class Unsealer(Protocol):
    """Turns a SealedSecret into the Secret manifest it stands for."""

    async def unseal(self, sealed: Body) -> Body: ...

    async def close(self) -> None: ...


class ServerUnsealer:
    """Asks a Kustos server (``POST /v1/sys/sealing/unseal``); the token needs ``update`` on that path."""

    def __init__(
        self,
        *,
        address: str,
        token: Sensitive[str] | None,
        ca_path: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        headers = {"X-Vault-Token": token.reveal()} if token is not None else {}
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_path) if ca_path else True
        )
        self._http = httpx.AsyncClient(
            base_url=address.rstrip("/"), headers=headers, verify=verify, timeout=timeout
        )

    async def unseal(self, sealed: Body) -> Body:
        try:
            response = await self._http.post(UNSEAL_PATH, json={"sealed_secret": sealed})
        except httpx.HTTPError as exc:
            raise KustosError(
                f"Kustos server unreachable for unsealing: {type(exc).__name__}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code in (401, 403):
            raise PermissionDeniedError(
                "the Kustos server refused to unseal: the operator's token lacks permission"
            )
        if response.status_code >= 300:
            errors = body.get("errors") if isinstance(body, dict) else None
            detail = "; ".join(str(e) for e in errors) if errors else f"HTTP {response.status_code}"
            raise InvalidRequestError(detail[:500])
        secret = ((body or {}).get("data") or {}).get("secret")
        if not isinstance(secret, dict):
            raise KustosError("the Kustos server's unseal answer has no secret")
        return secret

    async def close(self) -> None:
        await self._http.aclose()


def _true(annotations: Mapping[str, Any], key: str) -> bool:
    return str(annotations.get(key, "")).lower() == "true"


def _owner_reference(sealed: Body) -> Body:
    meta = sealed.get("metadata") or {}
    return {
        "apiVersion": sealed.get("apiVersion", "bitnami.com/v1alpha1"),
        "kind": "SealedSecret",
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "controller": True,
    }


def _controlled_by(secret: Body, sealed: Body) -> bool:
    uid = (sealed.get("metadata") or {}).get("uid")
    return any(
        ref.get("controller") and ref.get("uid") == uid and ref.get("kind") == "SealedSecret"
        for ref in (secret.get("metadata") or {}).get("ownerReferences") or []
    )


def plan_sealed_secret(*, sealed: Body, unsealed: Body, existing: Body | None) -> SecretPlan:
    """What to write so the Secret matches the unsealed manifest; raises :class:`NotManagedError` to refuse."""
    meta = sealed.get("metadata") or {}
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    wanted_meta = unsealed.get("metadata") or {}
    labels = dict(wanted_meta.get("labels") or {})
    annotations = dict(wanted_meta.get("annotations") or {})
    data = dict(unsealed.get("data") or {})
    skip_owner = _true(annotations, ANNOTATION_SKIP_OWNER) or _true(
        meta.get("annotations") or {}, ANNOTATION_SKIP_OWNER
    )
    if existing is None:
        metadata: Body = {"name": name, "namespace": namespace}
        if labels:
            metadata["labels"] = labels
        if annotations:
            metadata["annotations"] = annotations
        if not skip_owner:
            metadata["ownerReferences"] = [_owner_reference(sealed)]
        body: Body = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": data,
                      "type": unsealed.get("type") or "Opaque"}  # fmt: skip
        if unsealed.get("immutable") is not None:
            body["immutable"] = bool(unsealed["immutable"])
        return SecretPlan("create", body, "Unsealed")
    current_meta = existing.get("metadata") or {}
    current_annotations = current_meta.get("annotations") or {}
    patch_mode = _true(current_annotations, ANNOTATION_PATCH)
    if not (
        _controlled_by(existing, sealed)
        or _true(current_annotations, ANNOTATION_MANAGED)
        or patch_mode
    ):
        raise NotManagedError(
            f'Resource "{name}" already exists and is not managed by SealedSecret'
        )
    current = existing.get("data") or {}
    wanted: dict[str, str | None] = dict(data) if patch_mode else {**dict.fromkeys(current), **data}
    patch_data = {key: value for key, value in wanted.items() if current.get(key) != value}
    patch_meta: Body = {}
    current_labels = current_meta.get("labels") or {}
    if any(current_labels.get(k) != v for k, v in labels.items()):
        patch_meta["labels"] = labels
    if any(current_annotations.get(k) != v for k, v in annotations.items()):
        patch_meta["annotations"] = annotations
    if not skip_owner and not patch_mode and not _controlled_by(existing, sealed):
        others = [
            ref for ref in current_meta.get("ownerReferences") or [] if not ref.get("controller")
        ]
        patch_meta["ownerReferences"] = [*others, _owner_reference(sealed)]
    patch: Body = {}
    if patch_data:
        patch["data"] = patch_data
    if patch_meta:
        patch["metadata"] = patch_meta
    wanted_type = unsealed.get("type") or "Opaque"
    if not patch_mode and existing.get("type", "Opaque") != wanted_type:
        patch["type"] = wanted_type
    if not patch:
        return SecretPlan("none")
    return SecretPlan("patch", patch, "Unsealed")


@dataclass
class _Seen:
    fingerprint: str
    resource: Resource


def _fingerprint(body: Body) -> str:
    meta = body.get("metadata") or {}
    payload = {"spec": body.get("spec"), "uid": meta.get("uid"), "annotations": meta.get("annotations"),
               "generation": meta.get("generation")}  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class SealedSecretController:
    """Keeps each SealedSecret's Secret in place; the handlers call it per watch event."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        unsealer: Unsealer,
        bound: BoundOpener | None = None,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(tz=datetime.UTC),
    ) -> None:
        self._kube = kube
        self._unsealer = unsealer
        self._bound = bound
        self._now = now
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._refused: set[tuple[str, str]] = set()
        self.unsealed = 0
        """How many Secrets were written (for tests and the benchmark)."""

    async def close(self) -> None:
        await self._unsealer.close()

    async def sealed_event(self, event_type: str | None, body: Body) -> None:
        """A SealedSecret was listed, added, modified or deleted."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            self._seen.pop(key, None)  # its Secret follows the ownerReference
            self._refused.discard(key)
            return
        fingerprint = _fingerprint(body)
        seen = self._seen.get(key)
        if seen is not None and seen.fingerprint == fingerprint:
            return  # our own status write, or nothing that matters
        resource = next(
            (r for r in SEALED_SECRETS if r.api_version == body.get("apiVersion")),
            SEALED_SECRETS[0],
        )
        self._seen[key] = _Seen(fingerprint=fingerprint, resource=resource)
        await self.reconcile(body, resource=resource)

    async def secret_event(self, event_type: str | None, body: Body) -> None:
        """A Secret changed: recreate it when it was deleted and a SealedSecret controls it; take
        over a refused one as soon as it is annotated ``managed`` or ``patch``."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        seen = self._seen.get(key)
        if seen is None:
            return
        if event_type != "DELETED":
            annotations = meta.get("annotations") or {}
            if key not in self._refused or not (
                _true(annotations, ANNOTATION_MANAGED) or _true(annotations, ANNOTATION_PATCH)
            ):
                return
        elif not any(
            ref.get("kind") == "SealedSecret" for ref in meta.get("ownerReferences") or []
        ):
            return
        sealed = await self._kube.get(seen.resource, name=key[1], namespace=key[0])
        if sealed is not None and not (sealed.get("metadata") or {}).get("deletionTimestamp"):
            sealed.setdefault("apiVersion", seen.resource.api_version)
            sealed.setdefault("kind", "SealedSecret")
            _log.info(
                "Secret %s/%s changed (%s); reconciling its SealedSecret",
                key[0],
                key[1],
                event_type,
            )
            await self.reconcile(sealed, resource=seen.resource)

    async def reconcile(self, sealed: Body, *, resource: Resource) -> None:
        """Unseal and write the Secret; record the outcome in status and events."""
        meta = sealed.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace", "")
        try:
            unsealed = await self._open_bound(
                await self._unsealer.unseal(sealed), namespace=namespace, name=name
            )
        except KustosError as exc:
            await self._outcome(
                sealed,
                resource,
                ok=False,
                reason="ErrUnsealFailed",
                message=f"Failed to unseal: {exc}",
            )
            return
        try:
            existing = await self._kube.get(SECRETS, name=name, namespace=namespace)
            plan = plan_sealed_secret(sealed=sealed, unsealed=unsealed, existing=existing)
            if plan.action == "create":
                try:
                    await self._kube.create(SECRETS, body=plan.body, namespace=namespace)
                except ConflictError:  # created meanwhile: plan again against what is there
                    existing = await self._kube.get(SECRETS, name=name, namespace=namespace)
                    plan = plan_sealed_secret(sealed=sealed, unsealed=unsealed, existing=existing)
                    if plan.action == "patch":
                        await self._kube.patch(
                            SECRETS, name=name, namespace=namespace, patch=plan.body
                        )
            elif plan.action == "patch":
                await self._kube.patch(SECRETS, name=name, namespace=namespace, patch=plan.body)
        except NotManagedError as exc:
            self._refused.add((namespace, name))
            await self._outcome(
                sealed, resource, ok=False, reason="ErrUpdateFailed", message=str(exc)
            )
            return
        except KustosError as exc:
            await self._outcome(
                sealed,
                resource,
                ok=False,
                reason="ErrUpdateFailed",
                message=f"Failed to write the Secret: {exc}",
            )
            return
        self._refused.discard((namespace, name))
        if plan.action != "none":
            self.unsealed += 1
        await self._outcome(sealed, resource, ok=True, reason="Unsealed", message="SealedSecret unsealed successfully",
                            post=plan.action != "none")  # fmt: skip

    async def _open_bound(self, unsealed: Body, *, namespace: str, name: str) -> Body:
        """Open the bound values among the unsealed data (docs/bound.md); others stay as they are."""
        data = unsealed.get("data") or {}
        try:
            raw = {key: base64.b64decode(value) for key, value in data.items()}
        except (binascii.Error, TypeError, ValueError):
            return unsealed  # not base64: plan_sealed_secret names the problem
        if not contains_bound(raw):
            return unsealed
        where = f"SealedSecret {namespace}/{name}"
        if self._bound is None:
            raise InvalidRequestError(
                f"{where} holds bound values: start the controller with --bound-role to open them"
            )
        opened = await self._bound.open(raw, namespace=namespace, where=where)
        return {
            **unsealed,
            "data": {key: base64.b64encode(value).decode("ascii") for key, value in opened.items()},
        }

    async def _outcome(
        self,
        sealed: Body,
        resource: Resource,
        *,
        ok: bool,
        reason: str,
        message: str,
        post: bool = True,
    ) -> None:
        meta = sealed.get("metadata") or {}
        if not ok:
            _log.warning("SealedSecret %s/%s: %s", meta.get("namespace"), meta.get("name"), message)
        if post:
            try:
                await self._kube.post_event(involved=sealed, type_="Normal" if ok else "Warning", reason=reason,
                                            message=message, now=self._now())  # fmt: skip
            except KustosError as exc:
                _log.debug("event %s not posted: %s", reason, exc)
        stamp = self._now().strftime("%Y-%m-%dT%H:%M:%SZ")
        status_text = "True" if ok else "False"
        previous: Body = next(
            (
                c
                for c in (sealed.get("status") or {}).get("conditions") or []
                if c.get("type") == "Synced"
            ),
            {},
        )
        transition = (
            previous.get("lastTransitionTime") if previous.get("status") == status_text else None
        )
        condition: Body = {"type": "Synced", "status": status_text, "lastUpdateTime": stamp,
                           "lastTransitionTime": transition or stamp}  # fmt: skip
        if not ok:
            condition["message"] = message
            condition["reason"] = reason
        patch: Body = {"status": {"conditions": [condition]}}
        if meta.get("generation") is not None:
            patch["status"]["observedGeneration"] = meta["generation"]
        try:
            await self._kube.patch(resource, name=meta.get("name", ""), namespace=meta.get("namespace"), patch=patch,
                                   subresource="status")  # fmt: skip
        except (NotFoundError, KubeError, InvalidRequestError) as exc:
            _log.debug(
                "status of SealedSecret %s/%s not written: %s",
                meta.get("namespace"),
                meta.get("name"),
                exc,
            )
