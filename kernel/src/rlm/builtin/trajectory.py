"""Built-in plugin: the JSONL trajectory sink."""

from __future__ import annotations

from rlm.hookspecs import hookimpl


def jsonl_sink(config):
    from rlm.trajectory import JsonlSink

    return JsonlSink(log_dir=config.log_dir)


@hookimpl
def rlm_register_trajectory_sinks(register):
    register("jsonl", jsonl_sink, description="one JSON line per event in {log_dir}/{trajectory_id}.jsonl")
