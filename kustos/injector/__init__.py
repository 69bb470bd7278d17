"""The agent injector: a mutating admission webhook that adds ``kustos agent`` to annotated pods.

The API server calls ``POST /mutate`` with an AdmissionReview for every pod
created in the namespaces the MutatingWebhookConfiguration selects. A pod
annotated ``kustos.io/agent-inject: "true"`` (or Vault's
``vault.hashicorp.com/agent-inject``) comes back with the agent as an init
container and a native sidecar, an in-memory volume for the files, and a
projected ServiceAccount token the agent logs in with.

Modules, from the wire inwards:

* :mod:`~kustos.injector.serving` — the HTTPS app (``/mutate``, ``/healthz``, ``/metrics``);
* :mod:`~kustos.injector.reviewing` — one AdmissionReview in, one decision out (pure);
* :mod:`~kustos.injector.annotations` — the annotations read into an ``Injection`` (pure);
* :mod:`~kustos.injector.mutating` — the containers and volumes added, as a JSON Patch (pure).

The agent itself lives in ``kustos.agent``; this package only writes its
command line, so the two meet at ``kustos agent``'s flags.
"""

from kustos.injector.annotations import AnnotationError, Injection, read_injection
from kustos.injector.mutating import InjectorSettings, inject
from kustos.injector.reviewing import ReviewError, Verdict, review

__all__ = [
    "AnnotationError",
    "Injection",
    "InjectorSettings",
    "ReviewError",
    "Verdict",
    "inject",
    "read_injection",
    "review",
]
