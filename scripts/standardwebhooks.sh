#!/usr/bin/env bash
# The Standard Webhooks reference library for TypeScript/JavaScript (npm package
# `standardwebhooks`, pinned), with which the webhook tests verify tailbox's signatures
# as a receiver would: independently of tailbox's code and of the test receiver's own
# HMAC check.
#
#   scripts/standardwebhooks.sh fetch    install it into the cache, once (make deps does this)
#   scripts/standardwebhooks.sh verify   read JSON lines {"secret","id","timestamp","signature",
#                                        "body_base64"} on stdin; print "ok" or "fail: why"
#                                        for each, in order
#   scripts/standardwebhooks.sh dir      print where it is installed
#
#   TAILBOX_CACHE   cache root (default ~/.cache/tailbox)
set -euo pipefail

VERSION=1.1.1
CACHE_ROOT="${TAILBOX_CACHE:-${HOME}/.cache/tailbox}"
DIR="$CACHE_ROOT/standardwebhooks-$VERSION"
log() { printf 'standardwebhooks.sh: %s\n' "$*" >&2; }

fetch() {
  [[ -f "$DIR/node_modules/standardwebhooks/package.json" ]] && return 0
  command -v npm >/dev/null || { log "npm is missing: run scripts/install-deps.sh"; exit 1; }
  log "installing standardwebhooks@$VERSION from the npm registry into $DIR"
  mkdir -p "$DIR"
  tmp="$(mktemp -d "$CACHE_ROOT/.standardwebhooks.XXXXXX")"
  npm install --silent --no-audit --no-fund --prefix "$tmp" "standardwebhooks@$VERSION" >&2
  rm -rf "$DIR"
  mv "$tmp" "$DIR"
}

verify() {
  [[ -f "$DIR/node_modules/standardwebhooks/package.json" ]] || {
    log "not installed: run scripts/standardwebhooks.sh fetch (make deps does)"
    exit 1
  }
  NODE_PATH="$DIR/node_modules" node -e '
    const { Webhook } = require("standardwebhooks");
    const lines = require("fs").readFileSync(0, "utf8").split("\n").filter((l) => l.trim());
    for (const line of lines) {
      const r = JSON.parse(line);
      try {
        new Webhook(r.secret).verify(Buffer.from(r.body_base64, "base64").toString("utf8"), {
          "webhook-id": r.id,
          "webhook-timestamp": String(r.timestamp),
          "webhook-signature": r.signature,
        });
        console.log("ok");
      } catch (e) {
        console.log("fail: " + e.message);
      }
    }'
}

case "${1:-}" in
  fetch) fetch ;;
  verify) verify ;;
  dir) echo "$DIR" ;;
  *) log "usage: $0 fetch|verify|dir"; exit 2 ;;
esac
