"""``rlm env docker status|prune``: the sandbox containers of this machine.

``status`` lists the containers labelled ``rlm.env=docker`` with their owner
process; ``prune`` removes those whose owner process (on this host) died, or
every one with ``--all``.  Registered lazily as ``rlm_env_docker.cli:env``.
"""

from __future__ import annotations

import json
from typing import Annotated

from cyclopts import App, Parameter

env = App(name="env", help="Manage REPL environments.", help_format="plaintext")
docker = App(name="docker", help="The docker environment's sandbox containers.", help_format="plaintext")
env.command(docker)


@docker.command
def status(*, json_output: Annotated[bool, Parameter(name=["--json"])] = False) -> int:
    """List the sandbox containers (labelled rlm.env=docker) and whether their owner process lives.

    Parameters
    ----------
    json_output: bool
        Print JSON instead of text.
    """
    from rlm_env_docker import engine

    rows = [{"id": c.id[:12], "name": c.name, "status": c.status, "image": c.image, "session": c.session,
             "owner_pid": c.owner_pid, "owner_host": c.owner_host, "orphaned": c.orphaned}
            for c in engine.containers()]
    if json_output:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no rlm docker sandbox containers")
    else:
        print(f"{'container':<12}  {'name':<18} {'status':<22} {'image':<20} owner")
        for r in rows:
            owner = f"pid {r['owner_pid']}@{r['owner_host']}" + (" (dead: prune removes it)" if r["orphaned"] else "")
            print(f"{r['id']}  {r['name']:<18} {r['status']:<22} {r['image']:<20} {owner}")
    return 0


@docker.command
def prune(*, all_containers: Annotated[bool, Parameter(name=["--all"])] = False,
          dry_run: bool = False) -> int:
    """Remove sandbox containers left behind by processes that died.

    Parameters
    ----------
    all_containers: bool
        Remove every rlm sandbox container, also those of running sessions.
    dry_run: bool
        Only list what would be removed.
    """
    from rlm_env_docker import engine

    removed = engine.prune(everything=all_containers, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for c in removed:
        print(f"{verb} {c.id[:12]} {c.name} (owner pid {c.owner_pid}@{c.owner_host})")
    print(f"{verb} {len(removed)} container(s)")
    return 0
