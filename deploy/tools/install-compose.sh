#!/usr/bin/env bash
# Optional: the real docker compose CLI plugin (v2.29.7), built from the Go module proxy and
# installed at ~/.docker/cli-plugins/docker-compose, for `docker compose config` on a machine
# whose docker CLI has no compose plugin. NOT used by CI: a cold build takes ~10 minutes on
# 2 cores (measured); CI validates docker-compose.yml with deploy/tools/composecheck, which
# uses the same loader (compose-go) and builds in seconds.
#
# Idempotent: does nothing when `docker compose` already works or the plugin file exists.
# Usage: bash deploy/tools/install-compose.sh
set -euo pipefail

version=${COMPOSE_VERSION:-v2.29.7}
plugin_dir=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
if docker compose version >/dev/null 2>&1; then
  echo "install-compose: docker compose is already available: $(docker compose version)"
  exit 0
fi
if [ -x "$plugin_dir/docker-compose" ]; then
  echo "install-compose: $plugin_dir/docker-compose exists"
  exit 0
fi
command -v go >/dev/null 2>&1 || {
  echo "install-compose: needs Go >= 1.22 on PATH (https://go.dev/doc/install)" >&2
  exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "install-compose: building github.com/docker/compose/v2/cmd@$version (several minutes) ..."
GOBIN="$tmp" CGO_ENABLED=0 go install "github.com/docker/compose/v2/cmd@$version"
mkdir -p "$plugin_dir"
install -m 0755 "$tmp/cmd" "$plugin_dir/docker-compose"
echo "install-compose: built in $(($(date +%s) - start)) s -> $plugin_dir/docker-compose"
if command -v docker >/dev/null 2>&1; then
  docker compose version
else
  echo "install-compose: no docker CLI on PATH; run the plugin directly: $plugin_dir/docker-compose"
fi
