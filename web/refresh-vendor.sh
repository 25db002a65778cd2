#!/usr/bin/env bash
# Re-creates web/vendor/ from the pinned npm packages. The vendored files are
# committed so that building and serving nsplay never needs npm or a network.
set -euo pipefail

cd "$(dirname "$0")"
npm ci --no-audit --no-fund

mkdir -p vendor
rm -f vendor/*

# xterm 6 still ships a UMD bundle in lib/ (lib/*.mjs are ES modules). Loaded
# with a plain <script> tag it defines window.Terminal and
# window.FitAddon.FitAddon.
# The sourceMappingURL comments are stripped because the .map files are not
# vendored; otherwise every devtools session logs 404s for them.
strip_map() { sed '/^\/\/# sourceMappingURL=/d' "$1" > "$2"; }
strip_map node_modules/@xterm/xterm/lib/xterm.js         vendor/xterm.js
strip_map node_modules/@xterm/addon-fit/lib/addon-fit.js vendor/addon-fit.js
cp node_modules/@xterm/xterm/css/xterm.css vendor/xterm.css
# MIT requires the notices to travel with the code.
cp node_modules/@xterm/xterm/LICENSE     vendor/LICENSE.xterm
cp node_modules/@xterm/addon-fit/LICENSE vendor/LICENSE.addon-fit

node -e '
  const v = (p) => require("./node_modules/" + p + "/package.json").version;
  console.log("vendored @xterm/xterm " + v("@xterm/xterm") + ", @xterm/addon-fit " + v("@xterm/addon-fit"));
'
