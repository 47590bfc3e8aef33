#!/bin/sh
# npm, with `npm --version` answered without starting npm: tools probe it with short timeouts
# (create-hono allows 3 seconds) and a loaded machine takes longer than that to load npm.
if [ "$#" = 1 ] && [ "$1" = "--version" ] && [ -n "@NPM_VERSION@" ]; then
    echo "@NPM_VERSION@"
    exit 0
fi
exec /usr/bin/node /usr/local/lib/node_modules/npm/bin/npm-cli.js "$@"
