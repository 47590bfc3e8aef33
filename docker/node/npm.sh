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
exec /usr/bin/node /usr/local/lib/node_modules/npm/bin/npm-cli.js "$@"
