"""Generate the Python gRPC stubs for every ``.proto`` under ``kustos/protos/``.

Stubs are build products, never committed (``.gitignore``): ``pip install``
runs this through ``setup.py`` (the ``build_py`` step), and ``make`` runs it
after installing, so a fresh clone's ``make test`` and ``make run`` have them.
For each ``kustos/protos/<name>.proto`` it writes ``<name>_pb2.py`` and
``<name>_pb2_grpc.py`` (grpcio-tools), plus ``.pyi`` stubs for both when
mypy-protobuf is installed (the ``dev`` extra and the build requirements have
it), so ``mypy --strict`` checks the code that uses them.

Protos are compiled with the repository root on the include path, so the
generated modules import each other as ``kustos.protos.<name>_pb2``. A stub
newer than its ``.proto`` (and than this script) is left alone.

Usage: ``python scripts/generate_protos.py [--force]``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "kustos" / "protos"


def _plugin(name: str) -> str | None:
    """The path of a protoc plugin script next to this Python, or on the PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def _outputs(proto: Path, *, typed: bool) -> list[Path]:
    stem = proto.with_suffix("")
    names = [f"{stem}_pb2.py", f"{stem}_pb2_grpc.py"]
    if typed:
        names += [f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.pyi"]
    return [Path(name) for name in names]


def _stale(proto: Path, outputs: list[Path]) -> bool:
    newest_input = max(proto.stat().st_mtime, Path(__file__).stat().st_mtime)
    return any(not out.exists() or out.stat().st_mtime < newest_input for out in outputs)


def generate(*, force: bool = False) -> list[Path]:
    """Compile every stale ``.proto``; return the protos compiled."""
    from grpc_tools import protoc  # a build requirement; imported only when generating

    include = Path(protoc.__file__).parent / "_proto"
    mypy, mypy_grpc = _plugin("protoc-gen-mypy"), _plugin("protoc-gen-mypy_grpc")
    typed = mypy is not None and mypy_grpc is not None
    compiled = []
    for proto in sorted(PROTOS.glob("*.proto")):
        if not force and not _stale(proto, _outputs(proto, typed=typed)):
            continue
        args = [
            "grpc_tools.protoc",
            f"-I{ROOT}",
            f"-I{include}",
            f"--python_out={ROOT}",
            f"--grpc_python_out={ROOT}",
        ]
        if typed:
            args += [
                f"--plugin=protoc-gen-mypy={mypy}",
                f"--plugin=protoc-gen-mypy_grpc={mypy_grpc}",
                f"--mypy_out={ROOT}",
                f"--mypy_grpc_out={ROOT}",
            ]
        args.append(str(proto.relative_to(ROOT)))
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto.relative_to(ROOT)}")
        for out in _outputs(proto, typed=typed):
            out.touch()  # protoc leaves an unchanged file's mtime alone
        compiled.append(proto)
    return compiled


if __name__ == "__main__":
    done = generate(force="--force" in sys.argv[1:])
    for proto in done:
        print(f"generated stubs for {proto.relative_to(ROOT)}")
