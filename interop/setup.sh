#!/usr/bin/env bash
# Install the Node interop harness: ws 1.1.5, ws 6 (as the alias ws6) and moment (pinned
# in package-lock.json), then Microsoft's hyco-ws 1.0.5 and hyco-https 1.4.5, unpacked by
# hand from their npm tarballs because of their declared dependencies: hyco-ws's
# `http@latest` does not resolve (npm would fail on it), and hyco-https's
# `crypto`/`events`/`https`/`util@latest` are Node built-ins that npm would fetch as
# unrelated packages. hyco-https gets ws 6 as node_modules/hyco-https/node_modules/ws, a
# link to the pinned ws6. Idempotent: a second run with everything in place changes nothing.
set -euo pipefail

HYCO_WS_VERSION=1.0.5
# dist.integrity of hyco-ws 1.0.5 as published; checked after `npm pack`.
HYCO_WS_INTEGRITY='sha512-ZpG4kvKL1q7M4StVs41IQz5VE4sn0eE1KnOQ+xt9IZ0TdVilAhXfg9+YXSvnHVbNuT1Ff2dZjlmGJrefm+uNbg=='
HYCO_HTTPS_VERSION=1.4.5
# dist.integrity of hyco-https 1.4.5 as published.
HYCO_HTTPS_INTEGRITY='sha512-V9StoZf+GikbtiOBmUE1V8tzuiinox0XDU2YoCvD2vd09CYvyv2XU6gT4jP76WOVTcHSbCnci9l6EirESc9dzA=='

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
npm_flags=(--no-audit --no-fund --loglevel=error --ignore-scripts)

# 1. Pinned dependencies. `npm ci` wipes node_modules (and so hyco-ws), so run it only
#    when the installed versions differ from the lock file.
deps_ok() {
  node -e '
    const lock = require("./package-lock.json").packages;
    for (const [p, meta] of Object.entries(lock)) {
      if (!p) continue;
      let v;
      try { v = require("./" + p + "/package.json").version; } catch (e) { process.exit(1); }
      if (v !== meta.version) process.exit(1);
    }' 2>/dev/null
}
if deps_ok; then
  echo "setup: npm dependencies up to date"
else
  npm ci "${npm_flags[@]}"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# unpack NAME VERSION INTEGRITY: `npm pack` the tarball, check it, unpack it into
# node_modules/NAME without letting npm resolve its dependencies.
unpack() {
  local name="$1" version="$2" integrity="$3"
  local dest="node_modules/$name"
  if [ -f "$dest/package.json" ]; then
    echo "setup: $name already present"
    return
  fi
  (cd "$tmp" && npm pack "$name@$version" "${npm_flags[@]}" >/dev/null)
  local tgz="$tmp/$name-$version.tgz"
  local got
  got="$(node -e 'const b = require("fs").readFileSync(process.argv[1]);
    console.log("sha512-" + require("crypto").createHash("sha512").update(b).digest("base64"))' "$tgz")"
  if [ "$got" != "$integrity" ]; then
    echo "setup: $name $version tarball integrity mismatch: $got" >&2
    exit 1
  fi
  mkdir -p "$tmp/$name"
  tar -xzf "$tgz" -C "$tmp/$name" --strip-components=1 --no-same-owner
  rm -rf "$dest"
  mkdir -p node_modules
  mv "$tmp/$name" "$dest"
  echo "setup: unpacked $name $version"
}

# 2. hyco-ws and hyco-https themselves.
unpack hyco-ws "$HYCO_WS_VERSION" "$HYCO_WS_INTEGRITY"
unpack hyco-https "$HYCO_HTTPS_VERSION" "$HYCO_HTTPS_INTEGRITY"
if [ ! -e node_modules/hyco-https/node_modules/ws ]; then
  mkdir -p node_modules/hyco-https/node_modules
  ln -s ../../ws6 node_modules/hyco-https/node_modules/ws
  echo "setup: linked ws6 as hyco-https's ws"
fi

# 3. Both must load (with the ws, ws6 and moment from step 1), each with its own ws.
node -e 'const h = require("hyco-ws"); if (typeof h.createRelayedServer !== "function") process.exit(1);'
node -e '
  const h = require("hyco-https");
  if (typeof h.createRelayedServer !== "function") process.exit(1);
  const ws = require(require.resolve("ws/package.json", { paths: [require.resolve("hyco-https")] }));
  if (!ws.version.startsWith("6.")) process.exit(1);'
v() { node -p "require(require.resolve('$1/package.json', { paths: [require.resolve('$2')] })).version"; }
echo "setup: ok ($(node --version), hyco-ws $(node -p 'require("hyco-ws/package.json").version') with ws $(v ws hyco-ws)," \
  "hyco-https $(node -p 'require("hyco-https/package.json").version') with ws $(v ws hyco-https), moment $(node -p 'require("moment").version'))"

