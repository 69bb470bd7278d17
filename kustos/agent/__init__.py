"""The in-pod agent: a workload's secrets as files in a memory volume, pushed, wiped on revocation.

``kustos agent`` logs in with the pod's projected ServiceAccount token
(kubernetes auth), reads what its ``--secret`` and ``--template`` options
name, writes each as a file (atomically, mode 0400), and then either exits
(``--once``: the init container) or follows the server's change stream
(sidecar): a change is on disk within a second, and a file is removed within
a second when its secret is deleted or destroyed, when a policy change
takes the read away, or when the agent's token is revoked.

Modules: :mod:`.specs` (the options, parsed), :mod:`.files` (atomic writes
and removal in the directory), :mod:`.templates` (rendering, Vault agent
templates included), :mod:`.observability` (metrics, readiness, the small
HTTP server), :mod:`.running` (login, reading, following, the lifecycle).
The client layer does the HTTP (:mod:`kustos.client`); opening bound values
is :func:`kustos.client.open_in_place`.
"""

from kustos.agent.running import Agent, run_agent
from kustos.agent.specs import AgentSettings, SecretSpec, TemplateSpec

__all__ = ["Agent", "AgentSettings", "SecretSpec", "TemplateSpec", "run_agent"]
