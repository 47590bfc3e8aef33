#!/usr/bin/env bash
# Host prerequisites for building and running sandboxes: Python's venv module, mmdebstrap (to
# bootstrap a base image where no registry is reachable), Node.js (to build the JupyterLab extension)
# and a running Docker engine.
# With --with-browser also Chromium, which the browser tests drive through Playwright.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

missing=()
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ "${1:-}" = "--with-browser" ] && [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "ensure-host: installing ${missing[*]}..." >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "ensure-host: please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
        # mmdebstrap is only needed when no base image can be pulled; venv is needed always.
        python3 -c "import venv, ensurepip" >/dev/null 2>&1 || exit 1
    fi
fi
# The JupyterLab extension's bundler (rspack) needs Node.js 20.19 or newer.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null; then
    echo "ensure-host: Node.js 20.19 or newer is needed to build the JupyterLab extension (found: $(node --version 2>/dev/null || echo none))." >&2
    echo "ensure-host: install a newer Node.js (e.g. from nodejs.org or NodeSource) and run this again." >&2
    exit 1
fi
exec "$here/ensure-docker.sh"
