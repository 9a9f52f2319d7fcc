"""Configuration: precedence of the layers, error messages naming key and source,
parsing of environment strings, plugin tables, pricing tables and finding rlm.toml."""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import pytest
from attrs import define, field
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.config import KEYS, ModelPricing, RLMConfig, find_config_file, load_config, to_toml_comment_block
from rlm.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch, tmp_path):
    """No RLM_CONFIG from the outer environment; HOME is the test's tmp dir."""
    monkeypatch.delenv("RLM_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def _toml(tmp_path: Path, text: str, name: str = "rlm.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)
    assert info.value.exit_code == 2
    return str(info.value)


# --- precedence ----------------------------------------------------------------------------


def test_defaults_when_nothing_is_set():
    config = load_config(use_file=False, env={})
    assert config == RLMConfig()
    assert (config.max_depth, config.model, config.source) == (4, "gpt-4o-mini", None)


def test_file_overrides_default(tmp_path):
    path = _toml(tmp_path, '[rlm]\nmax_depth = 2\nmodel = "from-file"\n')
    config = load_config(path=path, env={})
    assert (config.max_depth, config.model, config.max_turns) == (2, "from-file", 20)
    assert config.source == str(path)


def test_environment_overrides_file(tmp_path):
    path = _toml(tmp_path, '[rlm]\nmax_depth = 2\nmodel = "from-file"\n')
    config = load_config(path=path, env={"RLM_MAX_DEPTH": "3"})
    assert (config.max_depth, config.model) == (3, "from-file")


def test_keyword_overrides_environment_and_file(tmp_path):
    path = _toml(tmp_path, '[rlm]\nmax_depth = 2\nmodel = "from-file"\n')
    config = load_config(path=path, env={"RLM_MAX_DEPTH": "3", "RLM_MODEL": "from-env"}, max_depth=1)
    assert (config.max_depth, config.model) == (1, "from-env")


def test_keyword_none_means_not_given():
    assert load_config(use_file=False, env={"RLM_MAX_DEPTH": "3"}, max_depth=None).max_depth == 3


def test_environment_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("RLM_MAX_TURNS", "7")
    assert load_config(use_file=False).max_turns == 7


def test_use_file_false_ignores_rlm_toml(tmp_path, monkeypatch):
    _toml(tmp_path, "[rlm]\nmax_depth = 2\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}).max_depth == 2
    assert load_config(env={}, use_file=False).max_depth == 4


# --- messages ------------------------------------------------------------------------------


def test_unknown_key_in_file_suggests_the_right_one(tmp_path):
    path = _toml(tmp_path, "[rlm]\nmax_depht = 3\n")
    assert _error(path=path, env={}) == "rlm.toml: [rlm] max_depht: unknown key; did you mean max_depth?"


def test_unknown_key_without_a_close_match_lists_the_known_keys(tmp_path):
    message = _error(path=_toml(tmp_path, "[rlm]\nzzzzzz = 1\n"), env={})
    assert message.startswith("rlm.toml: [rlm] zzzzzz: unknown key; known keys: ")
    assert all(key in message for key in ("max_depth", "model", "allowed_paths"))


def test_unknown_keyword_argument_suggests_the_right_one():
    assert _error(use_file=False, env={}, max_dept=3) == "keyword argument max_dept: unknown setting; did you mean max_depth?"


def test_unknown_table_suggests_the_right_one(tmp_path):
    assert _error(path=_toml(tmp_path, "[rlmm]\n"), env={}) == "rlm.toml: [rlmm]: unknown table; did you mean rlm?"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("file", "rlm.toml: [rlm] max_depth: expected an integer, got 'three'"),
        ("env", "environment variable RLM_MAX_DEPTH: expected an integer, got 'three'"),
        ("keyword", "keyword argument max_depth: expected an integer, got 'three'"),
    ],
)
def test_type_errors_name_the_key_and_where_it_came_from(tmp_path, where, expected):
    kwargs = {"use_file": False, "env": {}}
    if where == "file":
        kwargs = {"path": _toml(tmp_path, '[rlm]\nmax_depth = "three"\n'), "env": {}}
    elif where == "env":
        kwargs["env"] = {"RLM_MAX_DEPTH": "three"}
    else:
        kwargs["max_depth"] = "three"
    assert _error(**kwargs) == expected


def test_type_errors_of_several_keys_are_all_reported(tmp_path):
    message = _error(path=_toml(tmp_path, '[rlm]\nmax_turns = "x"\nverbose = "perhaps"\n'), env={})
    assert "rlm.toml: [rlm] max_turns: expected an integer, got 'x'" in message
    assert "rlm.toml: [rlm] verbose: expected true or false, got 'perhaps'" in message


def test_the_file_label_is_the_file_name(tmp_path):
    path = _toml(tmp_path, "[rlm]\nmax_turns = true\n", name="custom.toml")
    assert _error(path=path, env={}) == "custom.toml: [rlm] max_turns: expected an integer, got True"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RLM_MAX_DEPTH": "-1"}, "environment variable RLM_MAX_DEPTH: must be 0 or more"),
        ({"RLM_MAX_TURNS": "0"}, "environment variable RLM_MAX_TURNS: must be at least 1"),
        ({"RLM_TIMEOUT": "0"}, "environment variable RLM_TIMEOUT: must be more than 0 seconds"),
        ({"RLM_COST_LIMIT": "-2.5"}, "environment variable RLM_COST_LIMIT: must be more than 0 USD"),
        ({"RLM_ENV_WRITE_QUOTA_MB": "0"}, "environment variable RLM_ENV_WRITE_QUOTA_MB: must be a finite number"),
        ({"RLM_ENV_WRITE_QUOTA_MB": "nan"}, "environment variable RLM_ENV_WRITE_QUOTA_MB: must be a finite number"),
        ({"RLM_ENV_WRITE_QUOTA_MB": "inf"}, "environment variable RLM_ENV_WRITE_QUOTA_MB: must be a finite number"),
        ({"RLM_ENV_WRITE_QUOTA_FILES": "0"}, "environment variable RLM_ENV_WRITE_QUOTA_FILES: must be at least 1"),
        ({"RLM_PROTOCOL": "xml"}, "environment variable RLM_PROTOCOL: expected one of 'auto', 'tools', 'repl', got 'xml'"),
    ],
)
def test_range_and_choice_errors_name_the_source(env, expected):
    assert _error(use_file=False, env=env).startswith(expected)


def test_range_error_in_file_names_the_file(tmp_path):
    message = _error(path=_toml(tmp_path, "[rlm]\nmax_parallel = 0\n"), env={})
    assert message == "rlm.toml: [rlm] max_parallel: must be at least 1"


def test_invalid_toml_names_the_file_and_line(tmp_path):
    path = _toml(tmp_path, "[rlm]\nmax_depth = 3\nmodel = \n")
    message = _error(path=path, env={})
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 3" in message
    assert message.endswith("fix the syntax (see https://toml.io)")


def test_a_non_table_rlm_key_is_an_error(tmp_path):
    assert _error(path=_toml(tmp_path, "rlm = 3\n"), env={}) == "rlm.toml: rlm: must be a table ([rlm])"


# --- parsing environment strings -----------------------------------------------------------


@pytest.mark.parametrize("text", ["1", "true", "TRUE", " yes ", "on"])
def test_true_strings(text):
    assert load_config(use_file=False, env={"RLM_VERBOSE": text}).verbose is True


@pytest.mark.parametrize("text", ["0", "false", "No", "off", ""])
def test_false_strings(text):
    assert load_config(use_file=False, env={"RLM_SUB_CALLS": text}).sub_calls is False


def test_lists_from_comma_separated_strings():
    config = load_config(use_file=False, env={"RLM_ALLOWED_PATHS": " data, /tmp/x ,,docs", "RLM_TRAJECTORY_SINKS": ""})
    assert config.allowed_paths == ("data", "/tmp/x", "docs")
    assert config.trajectory_sinks == ()


def test_lists_from_toml_arrays_and_keywords(tmp_path):
    path = _toml(tmp_path, '[rlm]\nallowed_paths = ["a", "b"]\n')
    assert load_config(path=path, env={}).allowed_paths == ("a", "b")
    assert load_config(path=path, env={}, allowed_paths=["c"]).allowed_paths == ("c",)
    assert _error(path=_toml(tmp_path, "[rlm]\nallowed_paths = [1]\n"), env={}) == (
        "rlm.toml: [rlm] allowed_paths: expected a list of strings, got [1]"
    )


def test_optional_numbers_and_strings_from_the_environment():
    config = load_config(use_file=False, env={"RLM_TOKEN_BUDGET": "500", "RLM_COST_LIMIT": "0.25",
                                              "RLM_BACKEND": "litellm", "RLM_TIMEOUT": "12"})
    assert (config.token_budget, config.cost_limit, config.backend, config.timeout) == (500, 0.25, "litellm", 12.0)
    assert isinstance(config.timeout, float)


def test_integral_float_is_accepted_for_an_int_but_not_a_fraction(tmp_path):
    assert load_config(path=_toml(tmp_path, "[rlm]\nmax_turns = 5.0\n"), env={}).max_turns == 5
    assert _error(path=_toml(tmp_path, "[rlm]\nmax_turns = 5.5\n"), env={}).endswith("expected an integer, got 5.5")


@settings(deadline=None, max_examples=50)  # no per-example deadline: CI machines are busy
@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["", " ", "\t"]))
def test_ints_round_trip_through_environment_strings(value, pad):
    env = {"RLM_MAX_DEPTH": f"{pad}{value}{pad}", "RLM_TOKEN_BUDGET": str(value + 1)}
    config = load_config(use_file=False, env=env)
    assert (config.max_depth, config.token_budget) == (value, value + 1)


@settings(deadline=None, max_examples=50)  # no per-example deadline: CI machines are busy
@given(st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_floats_round_trip_through_environment_strings(value):
    config = load_config(use_file=False, env={"RLM_TIMEOUT": repr(value), "RLM_COST_LIMIT": str(value)})
    assert config.timeout == value
    assert math.isclose(config.cost_limit, value)


@settings(deadline=None, max_examples=50)  # no per-example deadline: CI machines are busy
@given(st.lists(st.text(alphabet="abcxyz/._-", min_size=1, max_size=8), max_size=5))
def test_lists_round_trip_through_environment_strings(parts):
    assert load_config(use_file=False, env={"RLM_ALLOWED_PATHS": ",".join(parts)}).allowed_paths == tuple(parts)


@settings(deadline=None, max_examples=50)  # no per-example deadline: CI machines are busy
@given(st.booleans())
def test_bools_round_trip_through_environment_strings(value):
    assert load_config(use_file=False, env={"RLM_MEMORY_ENABLED": str(value).lower()}).memory_enabled is value


def test_every_key_has_an_environment_variable():
    # a wrong value in RLM_<KEY> is reported as that variable, for every [rlm] key
    for key in KEYS:
        if key in {"model", "environment", "log_dir", "docker_image", "docker_memory", "backend", "api_base",
                   "snipara_api_key", "snipara_project_slug", "allowed_paths", "trajectory_sinks",
                   "budget_policies", "env_writable_paths", "env_workdir", "context_provider",
                   "sub_model", "sub_backend", "cache", "executor"}:
            continue  # any string is valid
        message = _error(use_file=False, env={f"RLM_{key.upper()}": "not-a-value"})
        assert message.startswith(f"environment variable RLM_{key.upper()}: "), message


# --- secrets -------------------------------------------------------------------------------


def test_snipara_api_key_alias():
    assert load_config(use_file=False, env={"SNIPARA_API_KEY": "rlm_alias"}).snipara_api_key == "rlm_alias"
    both = {"SNIPARA_API_KEY": "rlm_alias", "RLM_SNIPARA_API_KEY": "rlm_prefixed"}
    assert load_config(use_file=False, env=both).snipara_api_key == "rlm_prefixed"
    assert load_config(use_file=False, env={"SNIPARA_PROJECT_SLUG": "proj"}).snipara_project_slug == "proj"


def test_secrets_are_not_shown(tmp_path):
    config = load_config(use_file=False, env={"SNIPARA_API_KEY": "rlm_secret_value"})
    assert "rlm_secret_value" not in repr(config)
    message = _error(path=_toml(tmp_path, "[rlm]\nsnipara_api_key = 987654321\n"), env={})
    assert message == "rlm.toml: [rlm] snipara_api_key: expected a string (value not shown)"


# --- plugin tables -------------------------------------------------------------------------


@define(frozen=True, kw_only=True)
class DockerSettings:
    image: str = "python:3.11-slim"
    cpus: float = 1.0
    network: bool = False
    ports: tuple[str, ...] = ()


@define(frozen=True, kw_only=True)
class NeedsKey:
    endpoint: str
    retries: int = field(default=3)


SECTIONS = {"env-docker": DockerSettings, "svc": NeedsKey}


def test_plugin_table_is_validated_into_the_declared_class(tmp_path):
    path = _toml(tmp_path, '[plugins.env-docker]\nimage = "x:1"\ncpus = 2\n\n[plugins.svc]\nendpoint = "https://e"\n')
    config = load_config(path=path, env={}, sections=SECTIONS)
    assert config.plugin("env-docker") == DockerSettings(image="x:1", cpus=2.0)
    assert config.plugin("svc") == NeedsKey(endpoint="https://e")
    assert config.plugin("not-declared") is None


def test_declared_section_without_a_table_gets_its_defaults():
    config = load_config(use_file=False, env={}, sections={"env-docker": DockerSettings})
    assert config.plugins == {"env-docker": DockerSettings()}


def test_plugin_table_environment_override(tmp_path):
    path = _toml(tmp_path, '[plugins.env-docker]\nimage = "from-file"\ncpus = 2\n[plugins.svc]\nendpoint = "e"\n')
    env = {"RLM_PLUGINS__ENV_DOCKER__IMAGE": "from-env", "RLM_PLUGINS__ENV_DOCKER__NETWORK": "yes",
           "RLM_PLUGINS__ENV_DOCKER__PORTS": "80, 443", "RLM_PLUGINS__SVC__RETRIES": "9"}
    config = load_config(path=path, env=env, sections=SECTIONS)
    assert config.plugin("env-docker") == DockerSettings(image="from-env", cpus=2.0, network=True, ports=("80", "443"))
    assert config.plugin("svc").retries == 9


def test_plugin_table_unknown_key(tmp_path):
    path = _toml(tmp_path, '[plugins.env-docker]\nimgae = "x"\n')
    assert _error(path=path, env={}, sections=SECTIONS) == (
        "rlm.toml: [plugins.env-docker] imgae: unknown key; did you mean image?"
    )


def test_plugin_table_unknown_key_from_the_environment():
    message = _error(use_file=False, env={"RLM_PLUGINS__ENV_DOCKER__IMGAE": "x"}, sections={"env-docker": DockerSettings})
    assert message == "environment variable RLM_PLUGINS__ENV_DOCKER__IMGAE: unknown key; did you mean image?"


def test_plugin_table_type_errors_name_the_source(tmp_path):
    path = _toml(tmp_path, '[plugins.env-docker]\ncpus = "many"\n')
    assert _error(path=path, env={}, sections=SECTIONS) == (
        "rlm.toml: [plugins.env-docker] cpus: expected a number, got 'many'"
    )
    message = _error(use_file=False, env={"RLM_PLUGINS__SVC__ENDPOINT": "e", "RLM_PLUGINS__SVC__RETRIES": "lots"},
                     sections=SECTIONS)
    assert message == "environment variable RLM_PLUGINS__SVC__RETRIES: expected an integer, got 'lots'"


def test_plugin_table_missing_required_key(tmp_path):
    message = _error(use_file=False, env={}, sections={"svc": NeedsKey})
    assert message == "rlm.toml: [plugins.svc] endpoint: missing required key 'endpoint'"


def test_a_table_no_installed_plugin_reads_is_an_error(tmp_path):
    path = _toml(tmp_path, "[plugins.env-dockr]\nimage = 'x'\n")
    message = _error(path=path, env={}, sections=SECTIONS)
    assert message.startswith("rlm.toml: [plugins.env-dockr]: no installed plugin reads this table; did you mean env-docker?")
    assert message.endswith("install the plugin or remove the table")
    message = _error(path=path, env={})
    assert "no installed plugin declares a config section" in message


def test_environment_for_a_section_no_plugin_reads_is_an_error():
    message = _error(use_file=False, env={"RLM_PLUGINS__GHOST__X": "1"}, sections={"env-docker": DockerSettings})
    assert message == "environment variable RLM_PLUGINS__GHOST__X: no installed plugin reads section 'ghost'"


def test_a_non_table_plugin_entry_is_an_error(tmp_path):
    assert _error(path=_toml(tmp_path, "[plugins]\nsvc = 3\n"), env={}, sections=SECTIONS) == (
        "rlm.toml: plugins.svc: must be a table ([plugins.svc])"
    )


# --- pricing -------------------------------------------------------------------------------


def test_pricing_tables(tmp_path):
    path = _toml(tmp_path, '[pricing."openai/gpt-4o"]\ninput_per_mtok = 2.5\noutput_per_mtok = 10\n')
    config = load_config(path=path, env={})
    assert config.pricing == {"openai/gpt-4o": ModelPricing(input_per_mtok=2.5, output_per_mtok=10.0)}


def test_pricing_keyword_adds_to_the_file(tmp_path):
    path = _toml(tmp_path, '[pricing."a"]\ninput_per_mtok = 1\noutput_per_mtok = 2\n')
    extra = {"b": ModelPricing(input_per_mtok=3, output_per_mtok=4)}
    assert set(load_config(path=path, env={}, pricing=extra).pricing) == {"a", "b"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[pricing."m"]\ninput_per_mtok = 1\n',
         "rlm.toml: [pricing.\"m\"] output_per_mtok: missing required key 'output_per_mtok'"),
        ('[pricing."m"]\ninput_per_mtok = 1\noutput_per_mtok = "x"\n',
         "rlm.toml: [pricing.\"m\"] output_per_mtok: expected a number, got 'x'"),
        ('[pricing."m"]\ninput_per_mtok = 1\noutput_per_mtok = 2\ncached = 1\n',
         "rlm.toml: [pricing.\"m\"] cached: unknown key; known keys: input_per_mtok, output_per_mtok"),
        ('[pricing]\nm = 3\n', 'rlm.toml: [pricing."m"]: must be a table with input_per_mtok and output_per_mtok'),
        ('pricing = 3\n', 'rlm.toml: pricing: must be tables ([pricing."<model>"])'),
    ],
)
def test_pricing_errors(tmp_path, text, expected):
    assert _error(path=_toml(tmp_path, text), env={}) == expected


# --- finding rlm.toml ----------------------------------------------------------------------


def test_search_upwards_from_the_working_directory(tmp_path, monkeypatch):
    path = _toml(tmp_path, "[rlm]\nmax_depth = 1\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_config_file() == path
    assert load_config(env={}).max_depth == 1
    assert find_config_file(tmp_path / "a") == path


def test_search_stops_at_a_repository_root(tmp_path):
    _toml(tmp_path, "[rlm]\nmax_depth = 1\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    assert find_config_file(repo / "src") is None
    inside = _toml(repo, "[rlm]\n")
    assert find_config_file(repo / "src") == inside


def test_search_stops_at_home(tmp_path, monkeypatch):
    _toml(tmp_path, "[rlm]\n")
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    assert find_config_file(home / "work") is None


def test_rlm_config_names_the_file(tmp_path, monkeypatch):
    _toml(tmp_path, "[rlm]\nmax_depth = 1\n")
    other = _toml(tmp_path, "[rlm]\nmax_depth = 2\n", name="elsewhere.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLM_CONFIG", str(other))
    assert find_config_file() == other
    config = load_config(env={})
    assert (config.max_depth, config.source) == (2, str(other))


def test_rlm_config_pointing_nowhere_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RLM_CONFIG", str(tmp_path / "missing.toml"))
    message = _error(env={})
    assert message == f"RLM_CONFIG={tmp_path / 'missing.toml'}: no such file: point RLM_CONFIG at an rlm.toml or unset it"


# --- the file `rlm init` writes ------------------------------------------------------------


def test_commented_template_lists_every_key_and_loads_as_defaults(tmp_path):
    block = to_toml_comment_block()
    for key in KEYS:
        assert f"# {key} = " in block
    assert "snipara_api_key = \n" in block  # no value is ever written for a key
    config = load_config(path=_toml(tmp_path, block), env={})
    assert attrs.evolve(config, source=None) == RLMConfig()


def test_uncommented_template_lines_are_valid_values(tmp_path):
    # every "# key = default" line, uncommented, is accepted and gives the default back
    lines = []
    for line in to_toml_comment_block().splitlines():
        if line.startswith("# ") and " = " in line and not line.rstrip().endswith("="):
            lines.append(line[2:])
    path = _toml(tmp_path, "[rlm]\n" + "\n".join(lines) + "\n")
    assert attrs.evolve(load_config(path=path, env={}), source=None) == RLMConfig()


# --- RLM(pricing=...) and validator messages -----------------------------------------------------------


def test_pricing_given_as_a_keyword_takes_plain_mappings_and_checks_them():
    from rlm.config import ModelPricing

    config = load_config(use_file=False, env={}, pricing={"m": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}})
    assert config.pricing["m"] == ModelPricing(input_per_mtok=1.0, output_per_mtok=2.0)
    with pytest.raises(ConfigError, match=r"keyword argument pricing\['m'\]: must be a mapping"):
        load_config(use_file=False, env={}, pricing={"m": 3})
    with pytest.raises(ConfigError, match="keyword argument pricing: must map model names to prices"):
        load_config(use_file=False, env={}, pricing=[1])


def test_a_plugin_validators_error_names_where_the_value_came_from():
    import attrs

    def positive(instance, attribute, value):
        if value <= 0:
            raise ValueError(f"{attribute.name} must be more than 0, got {value!r}")

    @attrs.define(frozen=True, kw_only=True)
    class Section:
        size: int = attrs.field(default=1, validator=positive)

    with pytest.raises(ConfigError) as info:
        load_config(use_file=False, env={"RLM_PLUGINS__DEMO__SIZE": "-2"}, sections={"demo": Section})
    assert str(info.value).startswith("environment variable RLM_PLUGINS__DEMO__SIZE: size must be more than 0")
