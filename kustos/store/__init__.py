"""Storage backends: where the server keeps its (already encrypted) data.

One small, ordered key-value interface (:class:`kustos.store.base.StorageBackend`)
with transactions, implemented for SQLite (embedded default) and PostgreSQL
(shared by several server processes). Everything above it (the KV engine,
tokens, the keyring) is written once against that interface. Backends never
see plaintext secrets: values arrive encrypted or are non-secret metadata.
"""
