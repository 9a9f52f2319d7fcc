"""Fixtures of the cross-distribution tests: a clean environment and the installed plugins."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith(("RLM_", "OPENAI_", "ANTHROPIC_", "LITELLM_")) and key != "RLM_STRICT_PLUGINS":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.chdir(tmp_path)
