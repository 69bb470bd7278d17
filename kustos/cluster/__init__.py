"""Tools that switch a cluster's Secrets to encryption at rest and prove it.

- :mod:`~kustos.cluster.encryption_configs`: write the API server's
  EncryptionConfiguration (the KMS v2 plugin first, ``identity`` last);
- :mod:`~kustos.cluster.formats`: what a value stored in etcd is (plaintext,
  ``aescbc``, ``aesgcm``, ``secretbox``, ``kms:v1|v2:<name>``) without decrypting it;
- :mod:`~kustos.cluster.scanning`: read etcd directly and classify every Secret;
- :mod:`~kustos.cluster.rewriting`: rewrite every Secret through the API server
  so the first provider re-encrypts it (resumable);
- :mod:`~kustos.cluster.rbac`: who can read Secrets, directly or by an indirect route.

``kustos cluster ...`` (``kustos.cli.cluster``) is the command line over them.
"""
