"""Secrets engines: what answers under a mount (``kv`` for now; transit and others later).

An engine gets the mount entry, the path inside the mount and the
:class:`~kustos.server.calls.Call`, and returns a
:class:`~kustos.server.calls.Reply`. It keeps its data under the mount's
``storage_prefix`` and encrypts secrets through the barrier.
"""
