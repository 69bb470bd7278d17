"""Go templates in Kustos (``kustos.gitops.gotext`` + sprig) against Go's own, in the same run.

Why: every reconcile of an ``external-secrets.io`` ExternalSecret with a
template renders it (External Secrets parses and executes each template at
every reconcile, as Kustos does); a template engine much slower than Go's
would make the controller's first sync of many objects slow. The peer is a
small Go program (``tests/support/gotemplate/main.go``: Go's
``text/template`` + sprig, as External Secrets' engine v2 sets them up),
built offline from Debian's ``golang-go`` and sprig sources.

For each template of a realistic set (those of an External Secrets
migration: fields, ``urlquery``, ``fromJson``, ``b64enc``, a config file, a
``range`` over every key), in ``--rounds`` rounds alternating the order, each
engine executes it ``--renders`` times after one parse, then parses and
executes it ``--renders`` times. Printed: per template and engine the median
over rounds of p50 and p99 (µs), the rate (renders/s) and the ratio
Kustos / Go of the mean time; and the Python process's peak RSS.

Usage: ``.venv/bin/python bench/gotext.py [--rounds 3] [--renders 2000]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support helpers

from kustos.gitops.gotext import StringMap, execute, parse
from kustos.gitops.sprig import eso_functions
from tests.support import gotemplate

DATA = {
    "username": "app",
    "password": "p@ss w/rd",
    "team": "Pay-Ments",
    "config": '{"host": "db.internal", "port": 5432, "tags": ["a", "b"]}',
    "api_token": "tok-123",
}

TEMPLATES = {
    "field": "{{ .username }}",
    "dsn": "postgres://{{ .username }}:{{ .password | urlquery }}@"
    "{{ (.config | fromJson).host }}:{{ (.config | fromJson).port }}/app",
    "b64enc": "{{ .api_token | b64enc }}",
    "pipeline": '{{ .team | upper | replace "-" "_" | default "none" }}',
    "config-file": "database:\n  user: {{ .username }}\n  password: {{ .password | quote }}\n"
    "  host: {{ (.config | fromJson).host }}\n",
    "range": "{{ range $k, $v := . }}{{ $k }}={{ $v | quote }}\n{{ end }}",
}


def _summary(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)
    return {
        "p50_ns": float(ordered[n // 2]),
        "p99_ns": float(ordered[(n * 99) // 100]),
        "mean_ns": statistics.fmean(ordered),
    }


def _kustos(source: str, renders: int) -> dict[str, dict[str, float]]:
    functions = eso_functions()
    data = StringMap(DATA)
    parsed = parse(source, name="t", functions=functions)
    executed: list[int] = []
    for _ in range(renders):
        start = time.perf_counter_ns()
        execute(parsed, data)
        executed.append(time.perf_counter_ns() - start)
    whole: list[int] = []
    for _ in range(renders):
        start = time.perf_counter_ns()
        execute(parse(source, name="t", functions=functions), data)
        whole.append(time.perf_counter_ns() - start)
    return {"execute": _summary(executed), "parse_execute": _summary(whole)}


def _go(binary: Path, renders: int) -> list[dict[str, dict[str, float]]]:
    cases = [{"template": source, "data": DATA} for source in TEMPLATES.values()]
    done = subprocess.run(
        [str(binary), "-bench", str(renders)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return list(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--renders", type=int, default=2000)
    args = parser.parse_args()
    reason = gotemplate.missing()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory(prefix="bench-gotext-") as work:
        binary = gotemplate.build(Path(work))
        runs: dict[tuple[str, str, str], list[dict[str, float]]] = {}
        for round_ in range(args.rounds):
            engines = ["kustos", "go"] if round_ % 2 == 0 else ["go", "kustos"]
            for engine in engines:
                if engine == "go":
                    results = _go(binary, args.renders)
                else:
                    results = [_kustos(source, args.renders) for source in TEMPLATES.values()]
                for name, result in zip(TEMPLATES, results, strict=True):
                    for mode, figures in result.items():
                        runs.setdefault((name, mode, engine), []).append(figures)
    print(f"renders per template and mode: {args.renders}, rounds: {args.rounds} (medians)")
    header = f"{'template':<12} {'mode':<14} {'engine':<7} {'p50 µs':>8} {'p99 µs':>8} "
    print(header + f"{'renders/s':>10} {'ratio':>6}")
    report: dict[str, Any] = {}
    for name in TEMPLATES:
        for mode in ("execute", "parse_execute"):
            means = {}
            for engine in ("kustos", "go"):
                figures = runs[(name, mode, engine)]
                p50 = statistics.median(f["p50_ns"] for f in figures) / 1000
                p99 = statistics.median(f["p99_ns"] for f in figures) / 1000
                mean = statistics.median(f["mean_ns"] for f in figures)
                means[engine] = mean
                report[f"{name}/{mode}/{engine}"] = {"p50_us": p50, "p99_us": p99, "mean_ns": mean}
                ratio = f"{means['kustos'] / means['go']:.2f}" if engine == "go" else ""
                print(
                    f"{name:<12} {mode:<14} {engine:<7} {p50:>8.1f} {p99:>8.1f} "
                    f"{1e9 / mean:>10.0f} {ratio:>6}"
                )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the Python process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
