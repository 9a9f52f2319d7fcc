"""./.env: read with python-dotenv when configuration is loaded, below the real environment.

Precedence: keyword argument > real environment variable > ./.env > rlm.toml > default.  The
.env's variables go into ``os.environ`` (so backends find provider keys there) without replacing a
variable already set; a .env that cannot be read or parsed is one ConfigError naming the file and
line; ``RLM_DOTENV=0`` skips it; ``rlm init`` writes a .env.example and never clobbers one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import rlm.config as config_module
from rlm.config import DotenvError, last_dotenv, load_config
from rlm.errors import ConfigError

TOUCHED = ("RLM_MODEL", "RLM_MAX_DEPTH", "RLM_MAX_TURNS", "RLM_LOG_DIR", "RLM_CONFIG", "RLM_DOTENV",
           "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RLM_TEST_ONLY")


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh current directory (a git root, so no rlm.toml above it is found), a clean slate of
    the variables these tests use, and os.environ restored afterwards (load_dotenv writes to it)."""
    saved = dict(os.environ)
    for name in TOUCHED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(config_module, "_dotenv_set", {})
    monkeypatch.setattr(config_module, "_last_dotenv", None)
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    os.environ.clear()
    os.environ.update(saved)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence -----------------------------------------------------------------------------


def test_real_environment_beats_dotenv_which_beats_rlm_toml(here, monkeypatch):
    _write(here / "rlm.toml", '[rlm]\nmodel = "from-toml"\nmax_depth = 1\nmax_turns = 5\n')
    _write(here / ".env", "RLM_MODEL=from-dotenv\nRLM_MAX_DEPTH=2\n")
    monkeypatch.setenv("RLM_MAX_DEPTH", "3")

    config = load_config()
    assert config.model == "from-dotenv"  # .env beats rlm.toml
    assert config.max_depth == 3  # the real environment beats .env
    assert config.max_turns == 5  # rlm.toml beats the default
    assert os.environ["RLM_MAX_DEPTH"] == "3"  # never replaced
    assert load_config(max_depth=4, model="kw").max_depth == 4  # a keyword argument beats them all
    loaded = last_dotenv()
    assert loaded is not None and loaded.path == here / ".env"
    assert loaded.applied == ("RLM_MODEL",) and loaded.kept == ("RLM_MAX_DEPTH",)


def test_a_provider_key_from_dotenv_reaches_os_environ(here):
    _write(here / ".env", "# keys\nexport OPENAI_API_KEY=sk-from-dotenv\nANTHROPIC_API_KEY='sk-ant x'\n")
    load_config()
    assert os.environ["OPENAI_API_KEY"] == "sk-from-dotenv"
    assert os.environ["ANTHROPIC_API_KEY"] == "sk-ant x"


def test_loading_twice_is_the_same_and_follows_an_edited_dotenv(here):
    _write(here / ".env", "RLM_MODEL=one\n")
    assert load_config().model == "one"
    assert load_config().model == "one" and last_dotenv().applied == ("RLM_MODEL",)
    _write(here / ".env", "RLM_MODEL=two\n")  # a value .env put there is .env's to change
    assert load_config().model == "two"


def test_rlm_config_may_come_from_dotenv(here):
    _write(here / "elsewhere.toml", '[rlm]\nmax_turns = 7\n')
    _write(here / ".env", "RLM_CONFIG=elsewhere.toml\n")
    assert load_config().max_turns == 7


def test_an_explicit_env_mapping_or_dotenv_false_ignores_dotenv(here):
    _write(here / ".env", "RLM_MODEL=from-dotenv\nRLM_TEST_ONLY=1\n")
    assert load_config(env={}).model == "gpt-4o-mini"
    assert load_config(dotenv=False).model == "gpt-4o-mini"
    assert "RLM_TEST_ONLY" not in os.environ


def test_only_the_current_directorys_dotenv_is_read(here, monkeypatch):
    _write(here / ".env", "RLM_MODEL=from-parent\n")
    (here / "sub").mkdir()
    monkeypatch.chdir(here / "sub")
    assert load_config().model == "gpt-4o-mini"
    assert last_dotenv() is None


def test_a_directory_named_dotenv_is_not_a_dotenv(here):
    (here / ".env" / "bin").mkdir(parents=True)  # python -m venv .env
    assert load_config().model == "gpt-4o-mini"
    assert last_dotenv() is None


# --- the switch -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "false", "no", "off"])
def test_rlm_dotenv_off_skips_the_file(here, monkeypatch, value):
    _write(here / ".env", "RLM_MODEL=from-dotenv\nthis line is broken\n")
    monkeypatch.setenv("RLM_DOTENV", value)
    assert load_config().model == "gpt-4o-mini"  # not even parsed
    assert last_dotenv() is None


def test_a_bad_switch_value_is_a_config_error(here, monkeypatch):
    monkeypatch.setenv("RLM_DOTENV", "maybe")
    with pytest.raises(ConfigError, match="RLM_DOTENV: expected 1 or 0, got 'maybe'"):
        load_config()


# --- broken files ---------------------------------------------------------------------------


def test_a_line_that_cannot_be_parsed_is_one_error_naming_file_and_line(here):
    _write(here / ".env", "OPENAI_API_KEY=sk-secret\n\nthis is not an assignment\nRLM_MODEL=x\n")
    with pytest.raises(DotenvError) as caught:
        load_config()
    message = str(caught.value)
    assert message.startswith(f"{here / '.env'}: line 3: cannot parse this line: ")
    assert "RLM_DOTENV=0" in message and "sk-secret" not in message
    assert "OPENAI_API_KEY" not in os.environ  # nothing of a broken file is applied
    assert caught.value.exit_code == 2


def test_an_unterminated_quote_names_its_line(here):
    _write(here / ".env", "A=1\nB='never closed\n")
    with pytest.raises(DotenvError, match=r"\.env: line 2: cannot parse this line"):
        load_config()


def test_a_dotenv_that_is_not_utf8_names_the_line(here):
    (here / ".env").write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(DotenvError, match=r"\.env: is not valid UTF-8 \(line 2\): save the file as UTF-8"):
        load_config()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_dotenv_is_an_error(here):
    path = _write(here / ".env", "A=1\n")
    path.chmod(0)
    try:
        with pytest.raises(DotenvError, match=r"\.env: cannot read: Permission denied"):
            load_config()
    finally:
        path.chmod(0o600)


def test_a_bad_value_from_dotenv_names_the_dotenv(here):
    _write(here / ".env", "RLM_MAX_DEPTH=deep\n")
    with pytest.raises(ConfigError, match=r"environment variable RLM_MAX_DEPTH \(from .*\.env\): expected an integer"):
        load_config()


# --- through the CLI ------------------------------------------------------------------------


def test_cli_a_broken_dotenv_is_one_line_exit_2(rlm_cli, project):
    _write(project / ".env", "RLM_MODEL=x\n=no name\n")
    result = rlm_cli("logs")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"rlm: error: {project / '.env'}: line 2: cannot parse this line: write NAME=value lines "
        "(quote a value with spaces or #), or set RLM_DOTENV=0 to skip .env"
    ]
    assert rlm_cli("logs", env={"RLM_DOTENV": "0"}).returncode == 0


def test_cli_settings_from_dotenv_take_effect_and_the_environment_wins(rlm_cli, project):
    for name in ("from-dotenv", "from-env"):
        (project / name).mkdir()
        _write(project / name / f"run-{name}.jsonl", json.dumps({"type": "run_start", "prompt": name}) + "\n")
    _write(project / ".env", "RLM_LOG_DIR=from-dotenv\n")
    assert "run-from-dotenv" in rlm_cli("logs").stdout
    assert "run-from-env" in rlm_cli("logs", env={"RLM_LOG_DIR": "from-env"}).stdout
    assert "no trajectories in logs/" in rlm_cli("logs", env={"RLM_DOTENV": "off"}).stdout


def test_doctor_says_a_dotenv_was_loaded_and_never_shows_values(rlm_cli, project):
    _write(project / ".env", "OPENAI_API_KEY=sk-very-secret\nRLM_MODEL=gpt-4o\n")
    result = rlm_cli("doctor", env={"RLM_MODEL": "gpt-4o-mini"})
    assert f"[ok  ] .env loaded: {project / '.env'} (sets OPENAI_API_KEY; the environment already sets RLM_MODEL)" \
        in result.stdout
    assert "provider keys set: OPENAI_API_KEY (from .env)" in result.stdout
    assert "sk-very-secret" not in result.stdout + result.stderr

    off = rlm_cli("doctor", env={"RLM_DOTENV": "0"})
    assert "[ok  ] .env not read (RLM_DOTENV=0)" in off.stdout
    assert "OPENAI_API_KEY (from .env)" not in off.stdout


def test_doctor_reports_a_broken_dotenv_as_a_failure_naming_it(rlm_cli, project):
    _write(project / "rlm.toml", "[rlm]\n")
    _write(project / ".env", "A=1\nbroken line\n")
    result = rlm_cli("doctor")
    assert result.returncode == 1
    path = project / ".env"
    assert f"[FAIL] {path}: line 2: cannot parse this line" in result.stdout
    assert f"fix: fix or delete {path}; " in result.stdout


def test_dotenv_is_imported_only_when_a_dotenv_exists(run_python, project):
    code = ("import sys\nfrom rlm.config import load_config\nload_config()\n"
            "print('dotenv' in sys.modules)")
    assert run_python(code).stdout.split() == ["False"]
    _write(project / ".env", "RLM_MODEL=x\n")
    assert run_python(code).stdout.split() == ["True"]


# --- rlm init writes .env.example -----------------------------------------------------------


def test_init_writes_a_dotenv_example_that_loads_as_nothing(rlm_cli, project):
    result = rlm_cli("init")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["wrote rlm.toml", "wrote .env.example"]
    text = (project / ".env.example").read_text()
    assert "# OPENAI_API_KEY=" in text and "# ANTHROPIC_API_KEY=" in text and "# RLM_MODEL=" in text
    assert all(not line or line.startswith("#") for line in text.splitlines())  # every line commented
    (project / ".env").write_text(text)  # copied as it is, it is a valid .env that sets nothing
    doctor = rlm_cli("doctor")
    assert f".env loaded: {project / '.env'} (sets nothing)" in doctor.stdout


def test_init_does_not_clobber_a_dotenv_example_without_force(rlm_cli, project):
    _write(project / ".env.example", "MINE=1\n")
    result = rlm_cli("init")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "wrote rlm.toml", "kept .env.example as it is (pass --force to overwrite it)"]
    assert (project / ".env.example").read_text() == "MINE=1\n"

    refused = rlm_cli("init")  # rlm.toml exists now: nothing is written
    assert refused.returncode == 2 and (project / ".env.example").read_text() == "MINE=1\n"

    forced = rlm_cli("init", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "# OPENAI_API_KEY=" in (project / ".env.example").read_text()


def test_init_writes_the_example_beside_the_path_it_is_given(rlm_cli, project):
    (project / "conf").mkdir()
    result = rlm_cli("init", "--path", "conf/other.toml")
    assert result.returncode == 0, result.stderr
    assert (project / "conf" / ".env.example").is_file() and not (project / ".env.example").exists()


def test_a_nul_character_is_an_error_and_nothing_is_applied(here):
    _write(here / ".env", "RLM_TEST_ONLY=fine\n\nOPENAI_API_KEY=sk-\0secret\n")
    with pytest.raises(DotenvError, match=r"\.env: line 3: a NUL character cannot go into the environment") as caught:
        load_config()
    assert "secret" not in str(caught.value)
    assert "RLM_TEST_ONLY" not in os.environ and "OPENAI_API_KEY" not in os.environ


def test_a_huge_env_file_is_refused_unread(tmp_path, monkeypatch):
    """Bounded: a .env larger than DOTENV_MAX_BYTES is an error naming the file, and nothing is applied."""
    from rlm.config import DOTENV_MAX_BYTES, DotenvError, load_dotenv

    monkeypatch.delenv("RLM_DOTENV", raising=False)
    monkeypatch.delenv("RLM_HUGE_TEST", raising=False)
    (tmp_path / ".env").write_text("RLM_HUGE_TEST=1\n" + "# padding\n" * (DOTENV_MAX_BYTES // 10 + 1))
    with pytest.raises(DotenvError, match="larger than"):
        load_dotenv(tmp_path)
    assert "RLM_HUGE_TEST" not in os.environ


# --- one plugin setting read before the whole configuration (rlm mcp-serve's transport) ----------

def test_peek_plugin_setting_reads_what_load_config_reads(here, monkeypatch):
    from rlm.config import peek_plugin_setting

    monkeypatch.delenv("RLM_PLUGINS__MCP__TRANSPORT", raising=False)
    assert peek_plugin_setting("mcp", "transport") is None  # no file, no variable
    _write(here / "rlm.toml", '[plugins.mcp]\ntransport = "http"\n')
    assert peek_plugin_setting("mcp", "transport") == "http"
    assert peek_plugin_setting("mcp", "port") is None
    _write(here / ".env", "RLM_PLUGINS__MCP__TRANSPORT=stdio\n")  # .env over the file
    assert peek_plugin_setting("mcp", "transport") == "stdio"
    os.environ["RLM_PLUGINS__MCP__TRANSPORT"] = "other"  # the real environment over .env
    config_module._dotenv_set.clear()
    assert peek_plugin_setting("mcp", "transport") == "other"


def test_peek_plugin_setting_raises_what_load_config_raises(here, monkeypatch):
    from rlm.config import peek_plugin_setting

    monkeypatch.delenv("RLM_PLUGINS__MCP__TRANSPORT", raising=False)
    _write(here / "rlm.toml", "[plugins.mcp\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        peek_plugin_setting("mcp", "transport")
