"""A storage URL's password never shows: not in ``repr``, not in the server's banner."""

from __future__ import annotations

import pytest

from kustos.config import StorageConfig, redact_storage_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://kustos:s3cr%40t@db:5432/kustos", "postgresql://kustos:***@db:5432/kustos"),
        ("postgres://u:p@[::1]/db?sslmode=require", "postgres://u:***@[::1]/db?sslmode=require"),
        ("postgresql://kustos@db/kustos", "postgresql://kustos@db/kustos"),
        ("host=db user=k password=hunter2 dbname=k", "host=db user=k password=*** dbname=k"),
        ("host=db password = 'a b\\'c' dbname=k", "host=db password = *** dbname=k"),
        ("sqlite:///var/lib/kustos/kustos.db", "sqlite:///var/lib/kustos/kustos.db"),
    ],
)
def test_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact_storage_url(url) == shown
    assert StorageConfig(url=url).redacted == shown


def test_repr_leaves_the_url_out() -> None:
    config = StorageConfig(url="postgresql://kustos:hunter2@db/kustos")
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config)
