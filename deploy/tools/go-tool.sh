#!/usr/bin/env bash
# Build one of the Go validation tools of deploy/tools/<name>/ into the tools directory
# ($STREAMON_TOOLS_BIN, default ~/.cache/streamon/tools/bin), with the Go module proxy.
#
# Idempotent: skipped when the binary is there and was built from the same sources (a
# sha256 of go.mod, go.sum and *.go, recorded next to it; tests/integration/
# test_deploy_manifests.py computes the same hash and asks for a rebuild when they differ).
# Needs Go >= 1.24 on PATH (Go >= 1.21 fetches a newer toolchain by itself via
# GOTOOLCHAIN=auto). Usage: bash deploy/tools/go-tool.sh NAME
set -euo pipefail

name=${1:?usage: go-tool.sh NAME}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/$name"
bin_dir=${STREAMON_TOOLS_BIN:-$HOME/.cache/streamon/tools/bin}
[ -f "$src/go.mod" ] || { echo "$name: no Go module at $src" >&2; exit 2; }

sources_hash() {
  # Same bytes as tests/integration/test_deploy_manifests.py::_sources_hash.
  (cd "$src" && for f in go.mod go.sum $(ls -1 ./*.go | sed 's|^\./||' | LC_ALL=C sort); do
    printf '%s\0' "$f"; cat "$f"; printf '\0'
  done) | sha256sum | cut -d' ' -f1
}

hash=$(sources_hash)
if [ -x "$bin_dir/$name" ] && [ "$(cat "$bin_dir/.$name.sha256" 2>/dev/null)" = "$hash" ]; then
  echo "$name: up to date ($bin_dir/$name)"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "$name: needs Go >= 1.24 on PATH (https://go.dev/doc/install; Debian bookworm's golang-go" \
    "is 1.19, too old); then run: bash deploy/tools/install-$name.sh" >&2
  exit 1
fi

mkdir -p "$bin_dir"
start=$(date +%s)
echo "$name: building with $(go env GOVERSION) (modules from $(go env GOPROXY)) ..."
# -mod=readonly: go.sum pins every module; CGO off: a static binary, no C toolchain needed.
(cd "$src" && CGO_ENABLED=0 go build -mod=readonly -trimpath -o "$bin_dir/.$name.tmp" .)
mv -f "$bin_dir/.$name.tmp" "$bin_dir/$name"
echo "$hash" >"$bin_dir/.$name.sha256"
echo "$name: built in $(($(date +%s) - start)) s -> $bin_dir/$name"
