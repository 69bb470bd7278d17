"""The gRPC APIs Kustos serves, as ``.proto`` files; their Python stubs are generated.

Each ``<name>.proto`` here compiles to ``<name>_pb2.py`` / ``<name>_pb2_grpc.py``
(and ``.pyi`` stubs for mypy) at install time: ``scripts/generate_protos.py``,
run by ``setup.py``'s ``build_py`` and by ``make``. Generated files are never
committed or edited. The services that use them live in their own packages
(``kustos.kmsplugin`` for ``kms_v2.proto``, ``kustos.csi`` for
``csi_provider.proto``).
"""
