"""Through the real SDKs and the scripted server: sub-calls reach a second model and are priced with its
price; temperature/top_p/seed reach the wire for openai, anthropic and litellm (or are refused before any
request when the provider has no such option)."""

from __future__ import annotations

import json

import pytest

from rlm import cli
from rlm_testing.server import Reply

BACKENDS = [
    ("openai/big-model", "openai/cheap-model", "openai", "rlm_backend_openai"),
    ("anthropic/big-model", "anthropic/cheap-model", "anthropic", "rlm_backend_anthropic"),
    ("big-model", "cheap-model", "openai", "rlm_backend_litellm"),
]


def write_config(tmp_path, base_url: str, extra: str = "") -> None:
    (tmp_path / "rlm.toml").write_text(
        f'[rlm]\napi_base = "{base_url}"\nenvironment = "local"\nmax_depth = 2\n{extra}\n'
        '[pricing."big-model"]\ninput_per_mtok = 10.0\noutput_per_mtok = 30.0\n'
        '[pricing."cheap-model"]\ninput_per_mtok = 0.5\noutput_per_mtok = 1.5\n')


def wire_model(request) -> str:
    return str(request.body.get("model", ""))


@pytest.mark.parametrize(("model", "sub_model", "protocol", "package"), BACKENDS)
def test_sub_calls_reach_the_second_model_and_are_priced_with_its_price(scripted_llm, tmp_path, capsys, model,
                                                                         sub_model, protocol, package):
    pytest.importorskip(package)
    write_config(tmp_path, scripted_llm.base_url(protocol))

    def script(request):
        if wire_model(request).endswith("cheap-model"):
            return Reply.text("seven", input_tokens=2000, output_tokens=10)
        if '"seven"' in json.dumps(request.body) or "seven" in json.dumps(request.body):
            return Reply.text("The answer is seven.", input_tokens=1000, output_tokens=20)
        return Reply.tool_calls(("rlm_sub_complete", {"query": "what is 3 + 4?"}), input_tokens=1000,
                                output_tokens=20)

    scripted_llm.script(script)
    code = cli.main(["run", "Delegate 3 + 4", "--model", model, "--sub-model", sub_model, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["response"] == "The answer is seven."
    assert [wire_model(r).rsplit("/", 1)[-1] for r in scripted_llm.requests] == ["big-model", "cheap-model",
                                                                                  "big-model"]
    expected = 2 * (1000 * 10.0 + 20 * 30.0) / 1e6 + (2000 * 0.5 + 10 * 1.5) / 1e6  # computed here, not by rlm
    assert result["total_cost_usd"] == pytest.approx(expected)
    events = [json.loads(line) for line in
              (tmp_path / "logs" / f"{result['trajectory_id']}.jsonl").read_text().splitlines()]
    calls = [(e["model"].rsplit("/", 1)[-1], e["depth"]) for e in events if e["type"] == "llm_call"]
    assert calls == [("big-model", 0), ("cheap-model", 1), ("big-model", 0)]
    # rlm logs shows which model served each call
    assert cli.main(["logs", result["trajectory_id"], "--log-dir", str(tmp_path / "logs")]) == 0
    shown = capsys.readouterr().out
    assert "cheap-model" in shown and "big-model" in shown


@pytest.mark.parametrize(("model", "_sub", "protocol", "package"), BACKENDS)
def test_temperature_and_top_p_reach_the_wire(scripted_llm, tmp_path, capsys, model, _sub, protocol, package):
    pytest.importorskip(package)
    write_config(tmp_path, scripted_llm.base_url(protocol), "temperature = 0.25\ntop_p = 0.5")
    scripted_llm.script([Reply.text("ok"), Reply.text("ok")])
    assert cli.main(["run", "hi", "--model", model]) == 0, capsys.readouterr().err
    body = scripted_llm.requests[0].body
    assert body["temperature"] == 0.25 and body["top_p"] == 0.5
    assert cli.main(["run", "hi", "--model", model, "--temperature", "0.9"]) == 0, capsys.readouterr().err
    assert scripted_llm.requests[1].body["temperature"] == 0.9


@pytest.mark.parametrize(("model", "_sub", "protocol", "package"), [b for b in BACKENDS if b[2] == "openai"])
def test_a_seed_reaches_the_wire(scripted_llm, tmp_path, capsys, model, _sub, protocol, package):
    pytest.importorskip(package)
    write_config(tmp_path, scripted_llm.base_url(protocol), "seed = 42")
    scripted_llm.script([Reply.text("ok")])
    assert cli.main(["run", "hi", "--model", model]) == 0, capsys.readouterr().err
    assert scripted_llm.requests[0].body["seed"] == 42


def test_a_seed_for_anthropic_is_refused_before_any_request(scripted_llm, tmp_path, capsys):
    pytest.importorskip("rlm_backend_anthropic")
    write_config(tmp_path, scripted_llm.base_url("anthropic"), "seed = 42")
    scripted_llm.script([Reply.text("ok")])
    code = cli.main(["run", "hi", "--model", "anthropic/big-model"])
    err = capsys.readouterr().err
    assert code == 2 and scripted_llm.requests == []
    assert "anthropic backend does not send seed" in err and "Traceback" not in err
