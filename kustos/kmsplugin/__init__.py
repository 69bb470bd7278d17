"""The Kubernetes KMS v2 plugin: kube-apiserver's key-encryption key, kept outside the cluster.

kube-apiserver encrypts each object it stores with a data key derived from a
random DEK seed; it asks this plugin, over a unix socket, to wrap that seed
(``Encrypt``, once per seed), to unwrap it after a restart or a cache miss
(``Decrypt``) and how it is doing (``Status``, about once a minute). The
wrapping is done by a backend (``kustos.kmsplugin.backends``): a local key
file, a PKCS#11 HSM, AWS KMS, or a Kustos server's transit key.

:func:`~kustos.kmsplugin.serving.serve` runs the gRPC service
(``kustos/protos/kms_v2.proto``); ``kustos kms-plugin`` (``kustos.cli.kmsplugin``)
is its command line. The tools that switch a cluster over and prove it live
in ``kustos.cluster``.
"""

from kustos.kmsplugin.backends import BackendConfig, open_backend
from kustos.kmsplugin.backends.base import BackendStatus, KmsBackend, Wrapped

__all__ = ["BackendConfig", "BackendStatus", "KmsBackend", "Wrapped", "open_backend"]
