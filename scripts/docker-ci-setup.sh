#!/usr/bin/env bash
# Makes a Docker engine and a local Python image available without any registry:
# installs docker.io and debootstrap (Debian), starts dockerd when none answers, and builds
# the image ${RLM_DOCKER_IMAGE:-rlm-sandbox:ci} from a minimal Debian bookworm with python3.
# Idempotent: a running engine and an existing image are reused.
set -euo pipefail
IMAGE=${RLM_DOCKER_IMAGE:-rlm-sandbox:ci}
bash "$(dirname "$0")/ci-system-deps.sh" docker.io debootstrap
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd" >&2
  (dockerd >/tmp/rlm-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/rlm-dockerd.log" >&2; tail -20 /tmp/rlm-dockerd.log >&2; exit 1; }
fi
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  dir=$(mktemp -d /tmp/rlm-rootfs.XXXXXX)
  echo "building $IMAGE with debootstrap in $dir (about a minute)" >&2
  debootstrap --variant=minbase --include=python3 bookworm "$dir" http://deb.debian.org/debian >/tmp/rlm-debootstrap.log 2>&1 \
    || { tail -20 /tmp/rlm-debootstrap.log >&2; exit 1; }
  tar -C "$dir" -c . | docker import - "$IMAGE" >/dev/null
  rm -rf "$dir"
fi
docker image inspect "$IMAGE" --format '{{.Id}}' >/dev/null
echo "docker ready: image $IMAGE" >&2
