#!/usr/bin/env bash
# The CloudEvents Python SDK, for tests that parse what tailbox wrote as a consumer
# would: a venv in ~/.cache/tailbox (TAILBOX_CACHE) with `cloudevents` installed by pip
# on first use. Prints the venv's python as the last line on stdout.
#
#   scripts/cloudevents-sdk.sh
set -euo pipefail

SCRIPT_NAME="cloudevents-sdk.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$SCRIPT_DIR/lib/common.sh"

VERSION="2.2.0"
VENV="${TAILBOX_CACHE:-$HOME/.cache/tailbox}/cloudevents-$VERSION"

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import cloudevents.core.bindings.kafka' 2>/dev/null; then
  log "installing the CloudEvents Python SDK $VERSION into $VENV"
  command -v python3 >/dev/null || die "python3 is missing; run scripts/install-deps.sh"
  rm -rf "$VENV.tmp"
  python3 -m venv "$VENV.tmp" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV.tmp/bin/pip" install --quiet "cloudevents==$VERSION" >&2 || die "pip could not install cloudevents==$VERSION"
  rm -rf "$VENV"
  mv "$VENV.tmp" "$VENV"
  # A venv's scripts name their directory; the python binary itself does not care.
fi
echo "$VENV/bin/python"
