"""``rlm doctor`` with the real rlm-backend-local installed and no provider key: the embedded local model
is the provider, not "No providers configured" (issue 19)."""

from __future__ import annotations

import json

import pytest

from rlm import cli


def test_doctor_names_the_local_model_as_the_provider(monkeypatch, capsys):
    pytest.importorskip("rlm_backend_local")
    from rlm_backend_local import resolve

    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    try:
        code = cli.main(["doctor", "--json"])
    finally:
        resolve.reset_notice()
    captured = capsys.readouterr()
    checks = json.loads(captured.out)
    [provider] = [c for c in checks if c["check"] == "providers"]
    assert provider["summary"].startswith("provider: the embedded local model serves model ")
    assert "No providers configured" not in captured.out
    assert provider["status"] in ("ok", "warn") and code in (0, 1)
    if provider["status"] == "warn":  # not installed yet: it says so, and how
        assert "not ready" in provider["summary"] and provider["fix"]
