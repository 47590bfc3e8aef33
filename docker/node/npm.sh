#!/bin/sh
# npm, with two things a sandbox needs before npm starts:
# - `npm --version` answered without loading npm: tools probe it with short timeouts (create-hono
#   allows 3 seconds) and a loaded machine takes longer than that to load npm.
# - the npm cache the image carries: a sandbox's first start copies the image's caches into the home
#   (they appear whole when done); a command run meanwhile waits for them a little, instead of going
#   to a registry the sandbox may not reach.
if [ "$#" = 1 ] && [ "$1" = "--version" ] && [ -n "@NPM_VERSION@" ]; then
    echo "@NPM_VERSION@"
    exit 0
fi
if [ -n "${XDG_CACHE_HOME:-}" ] && [ "$XDG_CACHE_HOME" != /opt/sandbox-cache ] && [ -d /opt/sandbox-cache/npm ]; then
    waited=0
    while [ ! -d "$XDG_CACHE_HOME/npm" ] && [ "$waited" -lt 600 ] \
        && ls -d "$XDG_CACHE_HOME".seeding-* >/dev/null 2>&1; do
        sleep 0.1
        waited=$((waited + 1))
    done
fi
npm_cli=/usr/local/lib/node_modules/npm/bin/npm-cli.js
# Without network, a command that installs works from the cache alone (--offline: what is cached
# installs, the rest fails at once) and a failure says why, instead of a minute of retries.
case "${1:-}" in
    install | i | add | ci | create | exec | x | init | update | up)
        registry="${npm_config_registry:-https://registry.npmjs.org/}"
        if [ "${JUPYTER_SANDBOX_NETWORK_CHECK:-1}" != 0 ] && ! /usr/bin/node -e '
            const u = new URL(process.argv[1]);
            const s = require("net").connect({ host: u.hostname, port: u.port || (u.protocol === "https:" ? 443 : 80) });
            const done = (ok) => { s.destroy(); process.exit(ok ? 0 : 1); };
            s.setTimeout(3000, () => done(false)); s.on("connect", () => done(true)); s.on("error", () => done(false));
        ' "$registry" 2>/dev/null; then
            command=$1
            shift  # --offline goes before a `--`: what follows that is the called program's
            if /usr/bin/node "$npm_cli" "$command" --offline "$@"; then exit 0; else status=$?; fi
            host=$(echo "$registry" | sed -e 's|^[a-z]*://||' -e 's|[/:].*||')
            cat >&2 <<MESSAGE
npm: this sandbox cannot reach the npm registry $host (its network is off or limited, or the machine
has none), so only packages in the image's npm cache can be installed. What you can do:
  - allow the network, if the operator lets you:   %sandbox network internet
  - have the packages in the image:                 jupyter sandbox image build --lang node --npm PKG...
  - upload a package tarball and install the file:  %sandbox upload PKG.tgz, then npm install ./PKG.tgz
MESSAGE
            exit "$status"
        fi
        ;;
esac
exec /usr/bin/node "$npm_cli" "$@"
