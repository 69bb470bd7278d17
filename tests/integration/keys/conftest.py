"""A SoftHSM2 token for the whole session (see tests/support/softhsm.py for why not per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.softhsm import SoftHsmToken, create_token, softhsm_missing


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    reason = softhsm_missing()
    if reason is not None:
        pytest.skip(reason)
    token = create_token(tmp_path_factory.mktemp("softhsm"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(token.conf))
        yield token
