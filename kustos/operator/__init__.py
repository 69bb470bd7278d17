"""The Kubernetes operator: ExternalSecrets, the Reloader (and SealedSecrets), built on kopf.

Layout: :mod:`~kustos.operator.main` (``kustos controller run``, :func:`serve`),
:mod:`~kustos.operator.handlers` (thin kopf handlers),
:mod:`~kustos.operator.controllers` (scheduling and I/O around the pure steps),
:mod:`~kustos.operator.syncing` and :mod:`~kustos.operator.reloading` (pure
reconcile logic), :mod:`~kustos.operator.templating` (sandboxed Jinja2),
:mod:`~kustos.operator.providers` (one module per backend) and
:mod:`kustos.kube` (the Kubernetes client, shared with the other roles). CRDs, the Helm
chart and manifests live under ``deploy/``; see docs/operator.md.
"""
