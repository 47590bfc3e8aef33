#!/usr/bin/env bash
# Make sure a Docker engine answers. When none does and we are root on Debian or Ubuntu, install
# Debian's docker.io and start dockerd in the background; otherwise say how to get one and fail.
set -euo pipefail

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ]; then
    log "DOCKER_HOST=$DOCKER_HOST is set but no Docker engine answers there."
    log "Start that engine, or unset DOCKER_HOST to use a local one."
    exit 1
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "No Docker engine is running and this script can only install one as root on Debian/Ubuntu."
    log "Install Docker (https://docs.docker.com/engine/install/), start it, and make sure"
    log "'docker info' works for this user (e.g. add the user to the 'docker' group). Then run again."
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io from the distribution's packages..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    log "starting dockerd in the background (log: /var/log/jupyter-sandbox-dockerd.log)..."
    nohup dockerd >/var/log/jupyter-sandbox-dockerd.log 2>&1 &
fi

for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        log "Docker engine is ready."
        exit 0
    fi
    sleep 0.5
done
log "dockerd did not come up within 30 s; see /var/log/jupyter-sandbox-dockerd.log"
exit 1
