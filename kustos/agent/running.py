"""The agent's life: log in, read, write files, then follow the change stream until told to stop.

Flow (sidecar mode; ``--once`` stops after step 3):

1. **Login** with the projected ServiceAccount token (``--jwt-file``, re-read
   at every login because the kubelet rotates it) at
   ``auth/<auth-path>/login``; the server asks the cluster (TokenReview).
2. **Resolve** each path to its mount (``sys/internal/ui/mounts/<path>``, or
   the first segment) so ``secret/data/app/db`` and ``secret/app/db`` are the
   same secret ``app/db`` in mount ``secret``.
3. **Read and render** every ``--secret`` (bound values opened in place with
   the agent's own token, :func:`kustos.client.open_in_place`) and
   ``--template`` (whose ``secret(...)`` calls are read as they are met),
   and write the files atomically (:class:`~kustos.agent.files.SecretFiles`).
4. **Follow** ``sys/events/subscribe`` for exactly the paths in use. What
   the server pushes, and what the agent does:

   ============== ============================================================
   ``change``      re-read that secret: new content is written; 404 (deleted,
                   destroyed) or 403 removes the files that use it
   ``access``      a policy the token holds changed: re-read everything; a
                   read now refused removes its files
   ``revoked``     the agent's token was revoked: every file is removed, the
                   agent stops reading and reports not ready
   ``resync``      changes were dropped: re-read everything
   ============== ============================================================

   Why the server pushes these instead of the agent polling: a poll often
   enough to meet "within a second" would cost every pod a request per
   secret per second; the server already knows the moment a policy is
   written or a token revoked, and the stream is open anyway. As a fallback
   for what the server cannot push (another replica revoked the token), the
   stream's heartbeat (``heartbeat`` seconds, default 5) makes the server
   re-check the token, and a stream refused with 403 makes the agent ask
   ``lookup-self``: refused before its expiry means revoked.
5. **Keep the token**: renew at two thirds of its TTL; log in again when
   renewal is refused or the TTL stops growing (max TTL), and re-open the
   stream with the new token.
6. **SIGTERM**: remove every file the agent owns, exit 0.

Only *definitive* answers remove files (404, 403, a revoked token); a server
that cannot be reached leaves the files as they are and is retried.
``--exec`` runs after each round of changes that wrote or removed a file.
Logs name files, paths, versions and reasons, never a value or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import signal
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import httpx
import jwt as pyjwt

from kustos.agent.files import SecretFiles
from kustos.agent.observability import AgentMetrics, Readiness, serve
from kustos.agent.specs import AgentSettings, SecretSpec
from kustos.agent.templates import (
    SecretNeeded,
    SecretUnavailable,
    TemplateRenderer,
    vault_shape,
)
from kustos.client import KustosClient, ServerUnreachableError, open_in_place
from kustos.client.bound import is_bound
from kustos.client.events import subscribe
from kustos.errors import (
    ConfigError,
    InvalidRequestError,
    KustosError,
    NotFoundError,
    PermissionDeniedError,
)
from kustos.sensitive import Sensitive

__all__ = ["Agent", "SecretRef", "run_agent"]

_log = logging.getLogger("kustos.agent")
_READ_CONCURRENCY: Final = 8
_MAX_TEMPLATE_PASSES: Final = 64
_HTTP_TIMEOUT: Final = 10.0
_BACKOFF: Final = (0.2, 15.0)
_T = TypeVar("_T")
_DENIED: Final = "read not allowed"


@dataclass(frozen=True, order=True)
class SecretRef:
    """One KV v2 secret: its mount (no slashes) and its path inside the mount."""

    mount: str
    path: str

    @property
    def key(self) -> str:
        """``<mount>/<path>``, as the change stream names it."""
        return f"{self.mount}/{self.path}"


@dataclass
class _State:
    """What the agent knows of one secret right now."""

    data: dict[str, Any] | None = field(default=None, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)
    problem: str = ""
    """Why it cannot be used ("" when ``data`` is current)."""
    definitive: bool = False
    """True for 404/403 (remove files), False for a server that could not be asked (keep them)."""

    @property
    def version(self) -> int:
        return int(self.metadata.get("version") or 0)


@dataclass
class _Outcome:
    content: bytes | None
    """New content, or None when the file must go (``problem``) or stay as it is (``keep``)."""
    problem: str = ""
    keep: bool = False
    refs: frozenset[SecretRef] = frozenset()


class Agent:
    """One agent process: files for its specs, kept current until stopped."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = AgentMetrics()
        self.readiness = Readiness()
        self.files = SecretFiles(settings.directory, mode=settings.file_mode)
        self._renderers = [TemplateRenderer(t) for t in settings.templates]
        self._clock = clock
        self._client = KustosClient(
            settings.address,
            timeout=_HTTP_TIMEOUT,
            ca_cert=settings.ca_cert,
        )
        self._mounts: list[str] = []
        self._refs: dict[str, SecretRef] = {}
        self._states: dict[SecretRef, _State] = {}
        self._template_refs: dict[str, frozenset[SecretRef]] = {}
        self._rendered: set[str] = set()
        self._problems: dict[str, str] = {}
        self._dirty: dict[SecretRef, float] = {}
        self._dirty_all = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._restream = asyncio.Event()
        self._revoked = False
        self._token_issued = 0.0
        self._token_ttl = 0.0
        self._token_renewable = False
        self._followed_keys: frozenset[str] = frozenset()
        self._last_event_id: str | None = None
        self._connected_before = False
        self._access_at: float | None = None
        self._exec_lock = asyncio.Lock()
        self._exec_pending = False
        self._tasks: list[asyncio.Task[Any]] = []

    # -- names ----------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Every file name this agent owns."""
        return [s.name for s in self.settings.secrets] + [r.spec.name for r in self._renderers]

    async def _call(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await asyncio.to_thread(function, *args, **kwargs)

    # -- login and token -------------------------------------------------------------------

    def _read_jwt(self) -> str:
        path = self.settings.jwt_file
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            raise ConfigError(f"cannot read the ServiceAccount token {path}: {reason}") from None
        if not token:
            raise ConfigError(f"the ServiceAccount token file {path} is empty")
        audience = self.settings.audience
        if audience:
            try:
                claims = pyjwt.decode(token, options={"verify_signature": False})
            except pyjwt.PyJWTError:
                raise ConfigError(f"{path} does not hold a JWT") from None
            audiences = claims.get("aud")
            listed = [audiences] if isinstance(audiences, str) else list(audiences or [])
            if audience not in listed:
                raise ConfigError(
                    f"the token in {path} is for audience(s) {', '.join(map(str, listed)) or 'none'}, "
                    f"not {audience!r}: set the projected volume's audience to {audience!r}"
                )
        return token

    async def login(self) -> None:
        """Log in with the ServiceAccount token; the client carries the new Kustos token."""
        jwt = self._read_jwt()
        auth = await self._call(
            self._client.auth_methods.login_kubernetes,
            role=self.settings.role,
            jwt=Sensitive(jwt),
            mount_point=self.settings.auth_path,
        )
        self._client.token = Sensitive(str(auth["client_token"]))
        self._token_issued = self._clock()
        self._token_ttl = float(auth.get("lease_duration") or 0)
        self._token_renewable = bool(auth.get("renewable"))
        self.metrics.logins.inc()
        self.metrics.token_ttl.set(self._token_ttl)
        meta = auth.get("metadata") or {}
        _log.info(
            "logged in at auth/%s as role %s (service account %s/%s), token TTL %ds, "
            "accessor %s (kustos token revoke --accessor cuts this agent off)",
            self.settings.auth_path,
            self.settings.role,
            meta.get("service_account_namespace", "?"),
            meta.get("service_account_name", "?"),
            int(self._token_ttl),
            auth.get("accessor", "?"),
        )

    def _token_expired(self, *, margin: float = 0.0) -> bool:
        return (
            self._token_ttl > 0 and self._clock() >= self._token_issued + self._token_ttl - margin
        )

    async def _token_revoked(self) -> bool:
        """Whether the server refuses our token although it has not expired (revoked)."""
        try:
            await self._call(self._client.auth_token.lookup_self)
        except PermissionDeniedError:
            return not self._token_expired(margin=2.0)
        except KustosError:
            return False
        return False

    async def _keep_token(self) -> None:
        """Renew at two thirds of the TTL; log in again when renewal fails or stops extending."""
        while not self._stop.is_set() and not self._revoked:
            if self._token_ttl <= 0:
                return
            due = self._token_issued + self._token_ttl * 2 / 3
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - self._clock())):
                    await self._stop.wait()
            if self._stop.is_set() or self._revoked:
                return
            try:
                await self._renew_or_login()
            except Exception as exc:
                self.metrics.errors.labels(kind="login").inc()
                _log.warning("could not renew or log in again (%s); retrying in 5 s", exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):
                        await self._stop.wait()

    async def _renew_or_login(self) -> None:
        if self._token_renewable:
            try:
                auth = await self._call(self._client.auth_token.renew_self)
                ttl = float(auth.get("lease_duration") or 0)
                if ttl >= self._token_ttl / 2:
                    self._token_issued = self._clock()
                    self._token_ttl = ttl
                    self.metrics.renewals.inc()
                    _log.info("renewed the token, TTL %ds", int(ttl))
                    return
            except PermissionDeniedError:
                if await self._token_revoked():
                    await self._revoke("the agent's token was revoked")
                    return
            except KustosError as exc:
                _log.info("renewal failed (%s); logging in again", exc)
        await self.login()
        self._restream.set()

    # -- resolving and reading ---------------------------------------------------------------

    async def _resolve(self, raw: str) -> SecretRef:
        """``secret/data/app/db`` or ``secret/app/db`` → ``SecretRef("secret", "app/db")``."""
        known = self._refs.get(raw)
        if known is not None:
            return known
        mount = next((m for m in self._mounts if raw.startswith(m + "/")), None)
        if mount is None:
            try:
                answer = await self._call(
                    self._client.generic.read, f"sys/internal/ui/mounts/{raw}"
                )
            except (PermissionDeniedError, InvalidRequestError):
                answer = None
            data = (answer or {}).get("data") or {}
            found = str(data.get("path") or "").strip("/")
            if found and raw.startswith(found + "/"):
                kind = str(data.get("type") or "kv")
                if kind != "kv":
                    raise InvalidRequestError(f"{raw} is in a {kind} mount, not a KV v2 mount")
                mount = found
            else:
                mount = raw.partition("/")[0]
            self._mounts.append(mount)
            self._mounts.sort(key=len, reverse=True)
        rest = raw[len(mount) + 1 :]
        if rest.startswith("data/"):
            rest = rest[len("data/") :]
        if not rest:
            raise InvalidRequestError(f"{raw} names a mount, not a secret")
        ref = SecretRef(mount=mount, path=rest)
        self._refs[raw] = ref
        return ref

    async def _read(self, ref: SecretRef) -> _State:
        try:
            doc = await self._call(
                self._client.kv_v2.read_secret_version, ref.path, mount_point=ref.mount
            )
        except NotFoundError:
            return _State(
                problem="not found (deleted, destroyed or never written)", definitive=True
            )
        except PermissionDeniedError:
            return _State(problem=f"{_DENIED} (permission denied)", definitive=True)
        except ServerUnreachableError as exc:
            return _State(problem=f"server unreachable ({exc.reason})")
        except KustosError as exc:
            return _State(problem=f"read failed ({type(exc).__name__})")
        data = dict(doc.get("data") or {})
        metadata = dict(doc.get("metadata") or {})
        if any(is_bound(v) for v in data.values()):
            try:
                data = await self._call(
                    open_in_place, data, opener=self._client.bound.decrypt, where=ref.key
                )
            except (PermissionDeniedError, InvalidRequestError) as exc:
                return _State(problem=str(exc), definitive=True)
            except KustosError as exc:
                return _State(problem=f"opening a bound value failed ({type(exc).__name__})")
        return _State(data=data, metadata=metadata)

    async def _read_many(self, refs: list[SecretRef]) -> None:
        gate = asyncio.Semaphore(_READ_CONCURRENCY)

        async def one(ref: SecretRef) -> None:
            async with gate:
                state = await self._read(ref)
            previous = self._states.get(ref)
            if state.problem and not state.definitive and previous is not None:
                return  # the server could not be asked: keep what we had
            self._states[ref] = state

        await asyncio.gather(*(one(ref) for ref in refs))

    # -- rendering ---------------------------------------------------------------------------

    def _spec_refs(self) -> frozenset[SecretRef]:
        return frozenset(self._refs[s.path] for s in self.settings.secrets if s.path in self._refs)

    def _named(self) -> dict[str, Any]:
        named: dict[str, Any] = {}
        for spec in self.settings.secrets:
            state = self._states.get(self._refs.get(spec.path, SecretRef("", "")))
            if state is None or state.data is None:
                continue
            named[spec.name] = state.data if spec.field is None else state.data.get(spec.field)
        return named

    def _secret_outcome(self, spec: SecretSpec) -> _Outcome:
        ref = self._refs[spec.path]
        state = self._states.get(ref)
        if state is None or (state.data is None and not state.definitive):
            return _Outcome(None, problem=state.problem if state else "not read yet", keep=True)
        if state.data is None:
            return _Outcome(None, problem=f"{spec.path}: {state.problem}", refs=frozenset({ref}))
        if spec.field is None:
            content = json.dumps(state.data, sort_keys=True, ensure_ascii=False).encode("utf-8")
        elif spec.field not in state.data:
            return _Outcome(
                None,
                problem=f"{spec.path} has no field {spec.field!r} (version {state.version})",
                refs=frozenset({ref}),
            )
        else:
            value = state.data[spec.field]
            if isinstance(value, bytes):
                content = value
            elif isinstance(value, str):
                content = value.encode("utf-8")
            else:
                content = json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return _Outcome(content, refs=frozenset({ref}))

    async def _template_outcome(self, renderer: TemplateRenderer) -> _Outcome:
        named = self._named()
        for _ in range(_MAX_TEMPLATE_PASSES):
            needed: str | None = None

            def lookup(raw: str) -> dict[str, Any]:
                ref = self._refs.get(raw)
                state = self._states.get(ref) if ref is not None else None
                if ref is None or state is None:
                    raise SecretNeeded(raw)
                if state.data is None:
                    raise SecretUnavailable(raw, state.problem)
                return vault_shape(state.data, state.metadata)

            try:
                rendered = renderer.render(lookup=lookup, named=named)
            except SecretNeeded as exc:
                needed = exc.path
            except SecretUnavailable as exc:
                ref = self._refs[exc.path]
                state = self._states[ref]
                deps = self._template_refs.get(renderer.spec.name, frozenset()) | {ref}
                self._template_refs[renderer.spec.name] = deps
                if not state.definitive:
                    return _Outcome(None, problem=str(exc), keep=True, refs=deps)
                return _Outcome(None, problem=f"{exc.path}: {exc.reason}", refs=deps)
            except InvalidRequestError as exc:
                return _Outcome(None, problem=str(exc))
            if needed is None:
                # the --secret variables count too: a template may use any of them
                refs = frozenset(self._refs[p] for p in rendered.paths) | self._spec_refs()
                self._template_refs[renderer.spec.name] = refs
                return _Outcome(rendered.content, refs=refs)
            try:
                ref = await self._resolve(needed)
            except KustosError as exc:
                return _Outcome(None, problem=f"{needed}: {exc}")
            if ref not in self._states:
                await self._read_many([ref])
            if ref not in self._states:
                return _Outcome(None, problem=f"{needed}: not readable yet", keep=True)
        return _Outcome(None, problem="the template reads too many secrets")

    # -- one round ---------------------------------------------------------------------------

    async def refresh(
        self,
        refs: set[SecretRef] | None,
        *,
        since: Mapping[SecretRef, float] = {},
        read: bool = True,
    ) -> bool:
        """Re-read ``refs`` (None: every secret), re-render what uses them; True if a file changed.

        ``read=False`` re-renders from what is known (a read already known to be refused).
        """
        if refs is None:
            targets = set(self._states) | {self._refs[s.path] for s in self.settings.secrets}
        else:
            targets = set(refs)
        if read:
            await self._read_many(sorted(targets))
        changed = False
        for spec in self.settings.secrets:
            if refs is None or self._refs[spec.path] in targets:
                changed |= self._apply(spec.name, self._secret_outcome(spec), since)
        for renderer in self._renderers:
            deps = self._template_refs.get(renderer.spec.name)
            if refs is None or deps is None or deps & targets:
                changed |= self._apply(
                    renderer.spec.name, await self._template_outcome(renderer), since
                )
        self._update_readiness()
        if self._connected_before and frozenset(self._followed()) != self._followed_keys:
            self._restream.set()
        return changed

    def _apply(self, name: str, outcome: _Outcome, since: Mapping[SecretRef, float]) -> bool:
        lag_start = min((since[r] for r in outcome.refs if r in since), default=None)
        if outcome.content is not None:
            self._problems.pop(name, None)
            self._rendered.add(name)
            if not self.files.write(name, outcome.content):
                return False
            versions = ", ".join(
                f"{r.key} v{self._states[r].version}"
                for r in sorted(outcome.refs)
                if r in self._states
            )
            _log.info("wrote %s (%s)", name, versions or "template")
            self.metrics.renders.labels(file=name).inc()
            self._observe_lag(lag_start)
            return True
        self._problems[name] = outcome.problem
        if outcome.keep:
            if name not in self._rendered:
                _log.info("%s not rendered yet: %s", name, outcome.problem)
            return False
        self._rendered.discard(name)
        if not self.files.remove(name):
            _log.info("%s not written: %s", name, outcome.problem)
            return False
        _log.warning("removed %s: %s", name, outcome.problem)
        reason = (
            "denied"
            if "not allowed" in outcome.problem or "permission" in outcome.problem
            else "gone"
        )
        self.metrics.removals.labels(reason=reason).inc()
        self._observe_lag(lag_start)
        return True

    def _observe_lag(self, started: float | None) -> None:
        if started is not None:
            self.metrics.lag.observe(max(0.0, self._clock() - started))

    def _update_readiness(self) -> None:
        self.metrics.files.set(len(self.files.present))
        if self._revoked:
            ready, reason = False, "access revoked"
        else:
            missing = [n for n in self.names if n not in self._rendered]
            ready = not missing
            reason = "; ".join(f"{n}: {self._problems.get(n, 'not rendered')}" for n in missing)
        self.readiness.ready, self.readiness.reason = ready, reason or "ok"
        self.metrics.ready.set(1 if ready else 0)

    async def _revoke(self, reason: str) -> None:
        if self._revoked:
            return
        self._revoked = True
        removed = self.files.remove_all(self.names)
        self._rendered.clear()
        self.metrics.removals.labels(reason="revoked").inc(len(removed))
        _log.warning(
            "access revoked (%s): removed %d file(s)%s; not reading again until restarted",
            reason,
            len(removed),
            f": {', '.join(removed)}" if removed else "",
        )
        self._update_readiness()
        self._wake.set()
        if removed:
            self._schedule_exec()

    # -- modes -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Login, resolve every ``--secret`` path, first read and render."""
        await self.login()
        for spec in self.settings.secrets:
            await self._resolve(spec.path)
        await self.refresh(None)

    async def run_once(self) -> list[str]:
        """Init-container mode: render everything; the problems (empty: success, files written)."""
        await self.start()
        problems = [
            f"{n}: {self._problems.get(n, 'not rendered')}"
            for n in self.names
            if n not in self._rendered
        ]
        if problems:
            self.files.remove_all(self.names)
        return problems

    async def run(self) -> None:
        """Sidecar mode until :meth:`stop` (SIGTERM): follow changes; clean up on the way out."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        listen = self.settings.listen
        if listen is not None:
            self._tasks.append(
                asyncio.create_task(
                    serve(
                        listen[0],
                        listen[1],
                        metrics=self.metrics,
                        readiness=self.readiness,
                        stop=self._stop,
                    ),
                    name="agent-http",
                )
            )
        try:
            while not self._stop.is_set():
                try:
                    await self.start()
                    break
                except (ServerUnreachableError, PermissionDeniedError, InvalidRequestError) as exc:
                    self.metrics.errors.labels(kind="start").inc()
                    self.readiness.reason = f"cannot start: {exc}"
                    _log.warning("cannot start (%s); retrying in 2 s", exc)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(2.0):
                            await self._stop.wait()
            if self._stop.is_set():
                return
            if self.files.present:
                self._schedule_exec()
            self._tasks += [
                asyncio.create_task(self._follow(), name="agent-follow"),
                asyncio.create_task(self._work(), name="agent-work"),
                asyncio.create_task(self._keep_token(), name="agent-token"),
            ]
            await self._stop.wait()
        finally:
            self._stop.set()
            removed = self.files.remove_all(self.names)
            _log.info(
                "stopping: removed %d file(s)%s",
                len(removed),
                f": {', '.join(removed)}" if removed else "",
            )
            for task in self._tasks:
                if task.get_name() != "agent-http":
                    task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.close()

    def stop(self) -> None:
        """Stop the sidecar (what SIGTERM does)."""
        self._stop.set()

    def close(self) -> None:
        """Close the HTTP connections (:meth:`run` does it on the way out)."""
        self._client.close()

    # -- following ---------------------------------------------------------------------------

    def _mark(self, refs: list[SecretRef] | None, at: float) -> None:
        if refs is None:
            self._dirty_all = True
        else:
            for ref in refs:
                self._dirty.setdefault(ref, at)
        self._wake.set()

    async def _work(self) -> None:
        """Apply marked changes as they come (a burst is read once)."""
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            if self._revoked:
                continue
            changed = False
            try:
                if self._access_at is not None:
                    access_at, self._access_at = self._access_at, None
                    changed |= await self._recheck_access(access_at)
                dirty, self._dirty = self._dirty, {}
                everything, self._dirty_all = self._dirty_all, False
                if dirty or everything:
                    changed |= await self.refresh(None if everything else set(dirty), since=dirty)
            except Exception:
                self.metrics.errors.labels(kind="refresh").inc()
                _log.exception("refresh failed; retrying on the next event")
                continue
            if changed:
                self._schedule_exec()

    async def _recheck_access(self, at: float) -> bool:
        """A policy changed: one ``sys/capabilities-self`` call says which reads are gone or back.

        Files whose secret may no longer be read are removed at once (no read
        needed); secrets readable again are re-read. If the server will not
        say, every secret is re-read instead.
        """
        paths = {f"{ref.mount}/data/{ref.path}": ref for ref in sorted(self._states)}
        if not paths:
            return False
        try:
            answer = await self._call(
                self._client.generic.write, "sys/capabilities-self", {"paths": list(paths)}
            )
            data = (answer or {}).get("data") or answer or {}
            allowed = {
                path: bool({"read", "root"} & set(data[path])) for path in paths if path in data
            }
        except (KustosError, TypeError):
            allowed = {}
        if len(allowed) != len(paths):
            self._mark(None, at)
            return False
        denied: set[SecretRef] = set()
        for path, ref in paths.items():
            state = self._states[ref]
            was_denied = state.definitive and state.problem.startswith(_DENIED)
            if not allowed[path] and not was_denied:
                self._states[ref] = _State(
                    problem=f"{_DENIED} (a policy change took the read away)", definitive=True
                )
                denied.add(ref)
            elif allowed[path] and was_denied:
                self._dirty.setdefault(ref, at)
        if not denied:
            return False
        return await self.refresh(denied, since=dict.fromkeys(denied, at), read=False)

    def _followed(self) -> dict[str, SecretRef]:
        """The secrets the stream covers: every one in use.

        Those the token may not read right now stay on the stream: the server
        checks each change when it sends it, so when a policy gives the read
        back their changes flow again without a new stream.
        """
        return {ref.key: ref for ref in sorted(self._states)}

    def _http(self) -> httpx.AsyncClient:
        verify: bool | ssl.SSLContext = True
        if self.settings.ca_cert is not None:
            verify = ssl.create_default_context(cafile=str(self.settings.ca_cert))
        return httpx.AsyncClient(
            base_url=self.settings.address, verify=verify, timeout=_HTTP_TIMEOUT
        )

    async def _follow(self) -> None:
        """The change stream for every readable path in use, reconnecting (and resuming) until stopped."""
        delay = _BACKOFF[0]
        async with self._http() as http:
            while not self._stop.is_set() and not self._revoked:
                self._restream.clear()
                known = self._followed()
                consumer = asyncio.create_task(self._consume(http, known), name="agent-stream")
                restream = asyncio.create_task(self._restream.wait())
                try:
                    await asyncio.wait({consumer, restream}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    restream.cancel()
                    if not consumer.done():
                        consumer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait({consumer, restream})
                if consumer.cancelled():
                    continue  # re-open with the new set of paths, or the new token
                try:
                    if consumer.result():
                        delay = _BACKOFF[0]
                    continue
                except PermissionDeniedError:
                    self.metrics.stream_connected.set(0)
                    if await self._token_revoked():
                        await self._revoke("the agent's token is no longer valid")
                        return
                    if self._token_expired(margin=2.0):
                        with contextlib.suppress(KustosError):
                            await self.login()
                    reason = "permission denied"
                except KustosError as exc:
                    reason = str(exc)
                self.metrics.stream_connected.set(0)
                self.metrics.errors.labels(kind="stream").inc()
                _log.info("change stream dropped (%s); reconnecting in %.1f s", reason, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                delay = min(delay * 2, _BACKOFF[1])

    async def _consume(self, http: httpx.AsyncClient, known: dict[str, SecretRef]) -> bool:
        """Read one stream until it ends; True when it was live (``ready`` seen)."""
        self._followed_keys = frozenset(known)
        live = False
        stream = subscribe(
            http,
            prefix="",
            prefixes=sorted(known),
            token=self._client.token,
            last_event_id=self._last_event_id,
            heartbeat=self.settings.heartbeat,
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                if event.id:
                    self._last_event_id = event.id
                if event.type == "ready":
                    live = True
                    self.metrics.stream_connected.set(1)
                    # re-read once the stream is live: a change committed between the last
                    # read (or the previous stream) and this subscription is in no event
                    self._mark(None, self._clock())
                    self._connected_before = True
                elif event.type == "change":
                    ref = known.get(event.key)
                    if ref is not None:
                        self._mark([ref], event.time or self._clock())
                elif event.type == "resync":
                    _log.info("changes were dropped: re-reading every secret")
                    self._mark(None, event.time or self._clock())
                elif event.type == "access":
                    _log.info(
                        "policy %s changed: checking what the token may still read",
                        ", ".join(event.policies) or "?",
                    )
                    self._access_at = min(self._access_at or math.inf, event.time or self._clock())
                    self._wake.set()
                elif event.type == "revoked":
                    await self._revoke("the server revoked the agent's token")
                    return live
                elif event.type == "end":
                    return live
        return live

    # -- exec --------------------------------------------------------------------------------

    def _schedule_exec(self) -> None:
        if not self.settings.exec_command or self.settings.once:
            return
        if self._exec_lock.locked():
            self._exec_pending = True
            return
        self._tasks.append(asyncio.create_task(self._exec(), name="agent-exec"))

    async def _exec(self) -> None:
        async with self._exec_lock:
            while True:
                self._exec_pending = False
                argv = self.settings.exec_command
                try:
                    process = await asyncio.create_subprocess_exec(*argv)
                except OSError as exc:
                    self.metrics.execs.labels(outcome="error").inc()
                    _log.warning("--exec %s could not start: %s", argv[0], exc.strerror)
                else:
                    try:
                        async with asyncio.timeout(self.settings.exec_timeout):
                            code = await process.wait()
                    except TimeoutError:
                        process.kill()
                        await process.wait()
                        self.metrics.execs.labels(outcome="timeout").inc()
                        _log.warning(
                            "--exec %s timed out after %.0f s", argv[0], self.settings.exec_timeout
                        )
                    else:
                        outcome = "ok" if code == 0 else "failed"
                        self.metrics.execs.labels(outcome=outcome).inc()
                        _log.info("--exec %s exited %d", argv[0], code)
                if not self._exec_pending:
                    return


async def run_agent(settings: AgentSettings) -> int:
    """Run the agent as the CLI does; the process exit code."""
    try:
        agent = Agent(settings)
    except KustosError as exc:
        _log.error("%s", exc)
        return 2
    if settings.once:
        try:
            problems = await agent.run_once()
        except KustosError as exc:
            _log.error("cannot render: %s", exc)
            return 1
        finally:
            agent.close()
        for problem in problems:
            _log.error("cannot render %s", problem)
        if problems:
            return 1
        _log.info("wrote %d file(s) to %s", len(agent.names), settings.directory)
        return 0
    await agent.run()
    return 0
