"""Fixtures shared by rlm-backend-openai's transport tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rlm_backend_kit import http_transport


@pytest.fixture
def fresh_http_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No proxy and no transport choice from the environment, and no shared client kept from another test."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "RLM_HTTP_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)
    http_transport.clear_shared_clients()
    yield
    http_transport.clear_shared_clients()
