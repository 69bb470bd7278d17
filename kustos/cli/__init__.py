"""The ``kustos`` command line: thin commands over ``kustos.client`` and ``kustos.gitops``.

Each area is one module with a ``register(app)`` function that adds its
commands to the root Typer app (``kustos.cli.main``). Data goes to stdout in
``--output table|json|yaml``; messages and progress go to stderr.
"""
