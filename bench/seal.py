"""Seal and unseal throughput: Sealed Secrets format against Kustos' native format, same run.

Workload: ``--count`` Secrets (default 1,000) of ``--values`` keys each
(default 5, 32-byte values), strict scope, RSA-4096 sealing keys.

Rows printed:

* seal, bitnami      — ``seal_secret`` (one RSA public op + AES-GCM per value)
* seal, kustos       — native, sealed for the certificate bundle (RSA cert + its
  X25519 exchange cert): one X25519 ECDH per object, AES-GCM per value
* unseal, bitnami    — Kustos' unsealer on Sealed Secrets objects, with the
  ``kustos.io/sealing-key-id`` hint (one RSA private op per value)
* unseal, bitnami as the Sealed Secrets controller does it — no key id, a
  keyring of ``--keyring-size`` keys (default 8: eight months of 30-day
  renewals), every key tried in random order (Go map order) until one opens
  the value; objects sealed with the newest key
* unseal, kustos     — native (one X25519 ECDH per object, key chosen by id)
* unseal, kustos (RSA wrap) — native objects sealed for a plain RSA certificate
  (one RSA private op per object): the format before the X25519 wrap

Each row: objects/s, values/s, p50/p99 per object (ms). The rows of a phase
run interleaved object by object (so load on a shared machine hits them
alike); ratios are against rows measured in the same run. Peak RSS is printed at the end.

Run: ``.venv/bin/python bench/seal.py`` (about 4 minutes on 2 shared cores);
``--count 50`` for a quick look.
"""

from __future__ import annotations

import argparse
import random
import resource
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.progress import Progress

from kustos.crypto.sealing import SealingPrivateKey, generate_sealing_key, hybrid_decrypt
from kustos.errors import DecryptionError
from kustos.gitops.sealing import (
    SealFormat,
    SecretManifest,
    open_values,
    scope_label,
    scope_of,
    seal_secret,
)
from kustos.gitops.sealing.manifests import unb64
from kustos.sensitive import Sensitive


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    per_object: list[float]
    objects: int
    values: int

    def line(self) -> str:
        ordered = sorted(self.per_object)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        return (
            f"{self.name:<58} {self.objects / self.seconds:>9.1f} obj/s {self.values / self.seconds:>9.1f} values/s"
            f"   p50 {p50:>7.2f} ms   p99 {p99:>7.2f} ms"
        )


def _interleaved(
    rows: dict[str, tuple[str, Sequence[Any], Callable[[Any], object]]],
    values_per: int,
    progress: Progress,
    title: str,
) -> dict[str, Row]:
    """Run every row on object i before any row on object i+1, so load on the
    shared machine hits all rows alike; each row's time is its own sum."""
    count = len(next(iter(rows.values()))[1])
    per: dict[str, list[float]] = {key: [] for key in rows}
    task = progress.add_task(title, total=count)
    for i in range(count):
        for key, (_, items, fn) in rows.items():
            t = time.perf_counter()
            fn(items[i])
            per[key].append(time.perf_counter() - t)
        progress.advance(task)
    progress.remove_task(task)
    return {
        key: Row(name, sum(per[key]), per[key], count, count * values_per)
        for key, (name, _, _) in rows.items()
    }


def _controller_style_unseal(
    doc: dict[str, Any], keys: Sequence[SealingPrivateKey], rng: random.Random
) -> None:
    """What the Sealed Secrets controller does: no key id, keys in map (random) order, per value."""
    meta = doc["metadata"]
    label = scope_label(
        scope_of(meta.get("annotations")), namespace=meta["namespace"], name=meta["name"]
    )
    for key_name, value in doc["spec"]["encryptedData"].items():
        blob = unb64(value, what=key_name)
        order = list(keys)
        rng.shuffle(order)
        for key in order:
            try:
                hybrid_decrypt(key, blob, label=label)
                break
            except DecryptionError:
                continue
        else:
            raise SystemExit(f"benchmark bug: {key_name} did not open")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="Secrets to seal and unseal")
    parser.add_argument("--values", type=int, default=5, help="keys per Secret")
    parser.add_argument(
        "--keyring-size", type=int, default=8, help="keys the controller-style baseline holds"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    now = datetime.now(UTC)

    print(f"generating {args.keyring_size} RSA-4096 sealing keys...", file=sys.stderr)
    pairs = [
        generate_sealing_key(now=now - timedelta(days=30 * (args.keyring_size - i)))
        for i in range(args.keyring_size)
    ]
    newest = pairs[-1]
    all_keys = [p.private_key for p in pairs]
    secrets_in = [
        SecretManifest(
            metadata={"name": f"app-{i}", "namespace": f"team-{i % 20}"},
            data={f"key{j}": Sensitive(secrets.token_bytes(32)) for j in range(args.values)},
            type="Opaque",
        )
        for i in range(args.count)
    ]
    sealed: dict[SealFormat, list[dict[str, Any]]] = {fmt: [] for fmt in SealFormat}
    bundle = newest.private_key.with_exchange(newest.certificate)  # what sys/sealing/cert serves

    def sealer(fmt: SealFormat) -> Callable[[SecretManifest], object]:
        cert = bundle if fmt is SealFormat.kustos else newest.certificate
        return lambda s: sealed[fmt].extend(seal_secret(s, certificates=[cert], now=now, fmt=fmt))

    rsa_wrapped = [
        seal_secret(s, certificates=[newest.certificate], now=now, fmt=SealFormat.kustos)[0]
        for s in secrets_in
    ]

    with Progress(transient=True) as progress:
        rows = _interleaved(
            {f"seal {fmt}": (f"seal, {fmt.value}", secrets_in, sealer(fmt)) for fmt in SealFormat},
            args.values,
            progress,
            "sealing",
        )
        rows |= _interleaved(
            {
                "unseal bitnami": (
                    "unseal, bitnami (Kustos, key-id hint)",
                    sealed[SealFormat.bitnami],
                    lambda d: open_values(d, keys=all_keys),
                ),
                "unseal controller": (
                    f"unseal, bitnami as the controller does ({args.keyring_size} keys, no key id)",
                    sealed[SealFormat.bitnami],
                    lambda d: _controller_style_unseal(d, all_keys, rng),
                ),
                "unseal kustos": (
                    "unseal, kustos native (key id, 1 X25519 op/object)",
                    sealed[SealFormat.kustos],
                    lambda d: open_values(d, keys=all_keys),
                ),
                "unseal kustos rsa": (
                    "unseal, kustos native, RSA wrap (1 RSA op/object)",
                    rsa_wrapped,
                    lambda d: open_values(d, keys=all_keys),
                ),
            },
            args.values,
            progress,
            "unsealing",
        )

    print(f"{args.count} Secrets x {args.values} values, RSA-4096, keyring of {args.keyring_size}")
    for row in rows.values():
        print(row.line())

    def ratio(fast: str, slow: str) -> float:
        return rows[slow].seconds / rows[fast].seconds

    print(
        f"seal:   native vs bitnami                          {ratio('seal kustos', 'seal bitnami'):6.1f}x faster"
    )
    print(
        f"unseal: native vs bitnami (Kustos, key-id hint)    {ratio('unseal kustos', 'unseal bitnami'):6.1f}x faster"
    )
    print(
        f"unseal: native vs bitnami (controller-style)       {ratio('unseal kustos', 'unseal controller'):6.1f}x faster"
    )
    print(
        f"unseal: native X25519 vs native RSA wrap           {ratio('unseal kustos', 'unseal kustos rsa'):6.1f}x faster"
    )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
