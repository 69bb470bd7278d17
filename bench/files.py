"""Benchmark: encrypt and decrypt a 10,000-value YAML file, Kustos vs sops 1.18 (Python) in the same run.

Both tools use the same PGP recipient (the published sops test key, imported
into a throwaway GNUPGHOME) and the same plaintext file. Each tool is run as
a separate process, as a user would (``kustos encrypt|decrypt`` and
``sops -e|-d``), so the figures include interpreter start-up and one gpg
call for the data key. Prints wall time per run (median of ``--runs``),
values/s, the peak RSS of each process, and the ratio sops/kustos.

    .venv/bin/python bench/files.py [--values 10000] [--runs 3]

Needs gpg and the sops 1.18 virtualenv at .venv-sops118 (created by the
integration tests, or: python -m venv .venv-sops118 && .venv-sops118/bin/pip
install sops==1.18 'ruamel.yaml<0.17').
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEY = (
    Path(os.environ.get("KUSTOS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
    / "vectors/sops/sops_functional_tests_key.asc"
)
FP = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4"


def _document(values: int) -> bytes:
    lines = []
    per_section = 100
    for section in range(values // per_section):
        lines.append(f"section{section}:")
        for item in range(per_section):
            lines.append(f"    key{item}: value-{section}-{item}-some-secret-text")
    return ("\n".join(lines) + "\n").encode()


def _run(
    argv: list[str], env: dict[str, str], stdout_path: Path | None = None
) -> tuple[float, float]:
    """Run once; returns (seconds, peak RSS of that child in MiB, from wait4)."""
    start = time.perf_counter()
    with open(stdout_path or os.devnull, "wb") as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed: {err.read().decode()[-500:]}")
    return elapsed, usage.ru_maxrss / 1024


def _in_process(encrypted: bytes, env: dict[str, str], runs: int) -> float:
    """Library-level decrypt (no interpreter start-up, no CLI imports): median seconds."""
    from kustos.gitops.sops import KeyServices, decrypt_file, store_for

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        decrypt_file(encrypted, store=store_for(path="x.yaml"), services=KeyServices(env=env))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sops = REPO / ".venv-sops118" / "bin" / "sops"
    kustos = Path(sys.executable).with_name("kustos")
    if not sops.exists():
        raise SystemExit(
            f"{sops} missing: create the sops 1.18 virtualenv first (see the module docstring)"
        )
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        home = tmp / "gnupg"
        home.mkdir(mode=0o700)
        env = {**os.environ, "GNUPGHOME": str(home)}
        subprocess.run(
            ["gpg", "--batch", "--quiet", "--import", str(KEY)],
            env=env,
            check=True,
            capture_output=True,
        )
        plain = tmp / "values.yaml"
        plain.write_bytes(_document(args.values))
        tools = {
            "kustos": (
                lambda src: [str(kustos), "encrypt", "--pgp", FP, str(src)],
                lambda src: [str(kustos), "decrypt", str(src)],
            ),
            "sops 1.18": (
                lambda src: [str(sops), "-e", "-p", FP, str(src)],
                lambda src: [str(sops), "-d", str(src)],
            ),
        }
        results: dict[str, dict[str, tuple[float, float]]] = {}
        for name, (enc_argv, dec_argv) in tools.items():
            encrypted = tmp / f"{name.replace(' ', '_')}.enc.yaml"
            enc_times, dec_times, enc_rss, dec_rss = [], [], 0.0, 0.0
            for _ in range(args.runs):
                seconds, rss = _run(enc_argv(plain), env, encrypted)
                enc_times.append(seconds)
                enc_rss = max(enc_rss, rss)
            for _ in range(args.runs):
                seconds, rss = _run(dec_argv(encrypted), env)
                dec_times.append(seconds)
                dec_rss = max(dec_rss, rss)
            results[name] = {
                "encrypt": (statistics.median(enc_times), enc_rss),
                "decrypt": (statistics.median(dec_times), dec_rss),
            }
        library = _in_process((tmp / "kustos.enc.yaml").read_bytes(), env, args.runs)
        # Cross-check: each tool decrypts the other's file (same document).
        _run(tools["kustos"][1](tmp / "sops_1.18.enc.yaml"), env)
        _run(tools["sops 1.18"][1](tmp / "kustos.enc.yaml"), env)
    print(
        f"YAML file with {args.values} values, PGP recipient, median of {args.runs} runs (whole process)"
    )
    print(f"{'tool':<10} {'op':<8} {'time s':>8} {'values/s':>10} {'peak RSS MiB':>13}")
    for name, ops in results.items():
        for op, (seconds, rss) in ops.items():
            print(f"{name:<10} {op:<8} {seconds:>8.3f} {args.values / seconds:>10.0f} {rss:>13.1f}")
    print(
        f"kustos decrypt in-process (library, no start-up): {library:.3f} s, {args.values / library:.0f} values/s"
    )
    with open("/proc/loadavg") as handle:
        print(f"load average during the run: {handle.read().split()[0]} (2 shared cores)")
    for op in ("encrypt", "decrypt"):
        ratio = results["sops 1.18"][op][0] / results["kustos"][op][0]
        print(f"{op}: kustos is {ratio:.1f}x faster than sops 1.18")


if __name__ == "__main__":
    main()
