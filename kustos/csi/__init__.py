"""The Secrets Store CSI driver provider: Kustos secrets as files of a CSI volume.

The driver (``secrets-store.csi.k8s.io``) mounts a volume for a pod that names
a SecretProviderClass with ``provider: kustos``; it calls this provider's
``Mount`` over a unix socket with the class's parameters and the pod's
ServiceAccount token, writes the files it gets back into the pod's tmpfs
volume, and calls ``Mount`` again on its rotation poll, comparing the object
versions. An alternative to ``kustos agent`` for clusters that already run
the driver.

* :mod:`~kustos.csi.parameters` — the request's JSON read into ``MountParameters`` (pure);
* :mod:`~kustos.csi.mounting` — log in as the pod, read, build files and versions;
* :mod:`~kustos.csi.serving` — the gRPC service and the socket.
"""

from kustos.csi.mounting import MountedFile, Mounter, MountResult
from kustos.csi.parameters import MountParameters, ParameterError, SecretObject, read_mount_request

__all__ = [
    "MountParameters",
    "MountResult",
    "MountedFile",
    "Mounter",
    "ParameterError",
    "SecretObject",
    "read_mount_request",
]
