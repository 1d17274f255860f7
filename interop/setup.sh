#!/usr/bin/env bash
# Install the Node interop harness: ws 1.1.5 and moment (pinned in package-lock.json),
# then Microsoft's hyco-ws 1.0.5, unpacked by hand from its npm tarball because its
# declared dependency `http@latest` does not resolve (npm would fail on it).
# Idempotent: a second run with everything in place changes nothing.
set -euo pipefail

HYCO_WS_VERSION=1.0.5
# dist.integrity of hyco-ws 1.0.5 as published; checked after `npm pack`.
HYCO_WS_INTEGRITY='sha512-ZpG4kvKL1q7M4StVs41IQz5VE4sn0eE1KnOQ+xt9IZ0TdVilAhXfg9+YXSvnHVbNuT1Ff2dZjlmGJrefm+uNbg=='

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

# 2. hyco-ws itself, without letting npm resolve its dependencies.
dest="node_modules/hyco-ws"
if [ ! -f "$dest/package.json" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "hyco-ws@$HYCO_WS_VERSION" "${npm_flags[@]}" >/dev/null)
  tgz="$tmp/hyco-ws-$HYCO_WS_VERSION.tgz"
  got="$(node -e 'const b = require("fs").readFileSync(process.argv[1]);
    console.log("sha512-" + require("crypto").createHash("sha512").update(b).digest("base64"))' "$tgz")"
  if [ "$got" != "$HYCO_WS_INTEGRITY" ]; then
    echo "setup: hyco-ws $HYCO_WS_VERSION tarball integrity mismatch: $got" >&2
    exit 1
  fi
  mkdir -p "$tmp/x"
  tar -xzf "$tgz" -C "$tmp/x" --strip-components=1 --no-same-owner
  rm -rf "$dest"
  mkdir -p node_modules
  mv "$tmp/x" "$dest"
  echo "setup: unpacked hyco-ws $HYCO_WS_VERSION"
else
  echo "setup: hyco-ws already present"
fi

# 3. It must load (with the ws and moment from step 1).
node -e 'const h = require("hyco-ws"); if (typeof h.createRelayedServer !== "function") process.exit(1);'
echo "setup: ok ($(node --version), hyco-ws $(node -p 'require("hyco-ws/package.json").version'), ws $(node -p 'require("ws/package.json").version'), moment $(node -p 'require("moment").version'))"
