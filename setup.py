"""Build hook: generate the gRPC stubs from ``kustos/protos/*.proto`` before packaging.

Everything else about the package is declared in ``pyproject.toml``; this file
only makes ``build_py`` (which runs for wheels and editable installs alike)
call ``scripts/generate_protos.py`` first.
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithProtos(build_py):
    """``build_py`` that compiles the protos into ``kustos/protos/`` first."""

    def run(self) -> None:
        script = Path(__file__).resolve().parent / "scripts" / "generate_protos.py"
        spec = importlib.util.spec_from_file_location("_generate_protos", script)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {script}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.generate()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
