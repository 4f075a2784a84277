#!/usr/bin/env bash
# Build one of the Go validation tools of deploy/tools/<name>/ into the tools directory
# ($STREAMON_TOOLS_BIN, default ~/.cache/streamon/tools/bin), with the Go module proxy.
#
# Idempotent: skipped when the binary is there and was built from the same sources (a
# sha256 of go.mod, go.sum and *.go, recorded next to it; tests/integration/
# test_deploy_manifests.py computes the same hash and asks for a rebuild when they differ).
#
# Go: the first of `go` on PATH, /usr/local/go/bin/go and the toolchain this script keeps
# in ~/.cache/streamon/go<version> that is Go >= 1.24 builds the tools. An older Go (Debian
# 12's golang-go is 1.19) only fetches that toolchain once: golang.org/toolchain, the module
# Go's own GOTOOLCHAIN switch downloads, from the module proxy, checked against the hashes
# pinned below. Without any Go: `bash deploy/install-tools.sh` installs Debian's golang-go.
#
# Usage: bash deploy/tools/go-tool.sh [-q] NAME    (-q: no output when already up to date)
#        bash deploy/tools/go-tool.sh --check NAME (status 0 when up to date, 1 when not)
#        bash deploy/tools/go-tool.sh --find-go    (prints the Go >= 1.24 it would use; status 1
#                                                  and an older Go, or status 2: no Go at all)
set -euo pipefail

# The toolchain an older Go is upgraded to, and the go.sum hashes of its module zips (the
# same files as the go.dev release archives). Bump all three together.
TOOLCHAIN=go1.26.8
declare -A TOOLCHAIN_SUM=(
  [amd64]="h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM="
  [arm64]="h1:sYL/O6MqS68ML0kjsQ36WoYIpJqkw60TxizWUYUKQMc="
)
MIN_MINOR=24 # go.mod of the tools: go 1.24.0

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${STREAMON_TOOLS_BIN:-$HOME/.cache/streamon/tools/bin}
toolchain_dir=$HOME/.cache/streamon/$TOOLCHAIN

go_minor() { # "go1.19.8" -> 19; empty when the binary does not run
  "$1" env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p'
}

# The Go to build with (>= 1.24) on stdout; else status 1 and, on stdout, an older Go or nothing.
find_go() {
  local candidate minor older=""
  for candidate in "$(command -v go || true)" /usr/local/go/bin/go "$toolchain_dir/bin/go"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    minor=$(go_minor "$candidate")
    [ -n "$minor" ] || continue
    if [ "$minor" -ge "$MIN_MINOR" ]; then
      echo "$candidate"
      return 0
    fi
    older=${older:-$candidate}
  done
  echo "$older"
  return 1
}

# Fetch $TOOLCHAIN with an older Go into $toolchain_dir.
fetch_toolchain() {
  local old=$1 arch tmp json sum dir
  case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *)
      echo "go-tool: no pinned $TOOLCHAIN for $(uname -m): install Go >= 1.$MIN_MINOR (https://go.dev/doc/install)" >&2
      return 1
      ;;
  esac
  echo "go-tool: $("$old" env GOVERSION) is too old for the tools (go.mod: 1.$MIN_MINOR); fetching $TOOLCHAIN ..."
  tmp=$(mktemp -d)
  # The module cache is read-only: make it removable before removing it.
  trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' RETURN
  # GOSUMDB=off: the hash is checked right below against the pinned one instead, so no
  # checksum database needs to be reachable. GOFLAGS=-mod=mod: no go.mod around.
  json=$(cd "$tmp" && env GOPATH="$tmp/gopath" GOMODCACHE="$tmp/gopath/pkg/mod" GOFLAGS=-mod=mod \
    GO111MODULE=on GOSUMDB=off GOTOOLCHAIN=local \
    "$old" mod download -json "golang.org/toolchain@v0.0.1-$TOOLCHAIN.linux-$arch")
  sum=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  if [ "$sum" != "${TOOLCHAIN_SUM[$arch]}" ]; then
    echo "go-tool: golang.org/toolchain@v0.0.1-$TOOLCHAIN.linux-$arch has hash '$sum', expected" \
      "${TOOLCHAIN_SUM[$arch]}: not used" >&2
    return 1
  fi
  mkdir -p "$(dirname "$toolchain_dir")"
  rm -rf "$toolchain_dir.tmp"
  cp -r "$dir" "$toolchain_dir.tmp"
  chmod -R u+w "$toolchain_dir.tmp"
  # Module zips carry no file modes: the executables are bin/* and pkg/tool/<os_arch>/*.
  chmod +x "$toolchain_dir.tmp"/bin/* "$toolchain_dir.tmp"/pkg/tool/*/*
  mv "$toolchain_dir.tmp" "$toolchain_dir"
  echo "go-tool: $("$toolchain_dir/bin/go" env GOVERSION) -> $toolchain_dir"
}

if [ "${1:-}" = "--find-go" ]; then
  if go=$(find_go); then
    echo "$go"
    exit 0
  fi
  [ -n "$go" ] && echo "$go" && exit 1
  exit 2
fi
mode=build
case "${1:-}" in
  -q) mode=quiet && shift ;;
  --check) mode=check && shift ;;
esac
name=${1:?usage: go-tool.sh [-q | --check] NAME}
src="$here/$name"
[ -f "$src/go.mod" ] || { echo "$name: no Go module at $src" >&2; exit 2; }

sources_hash() {
  # Same bytes as tests/integration/test_deploy_manifests.py::_sources_hash.
  (cd "$src" && for f in go.mod go.sum $(ls -1 ./*.go | sed 's|^\./||' | LC_ALL=C sort); do
    printf '%s\0' "$f"; cat "$f"; printf '\0'
  done) | sha256sum | cut -d' ' -f1
}

hash=$(sources_hash)
if [ -x "$bin_dir/$name" ] && [ "$(cat "$bin_dir/.$name.sha256" 2>/dev/null)" = "$hash" ]; then
  [ "$mode" != build ] || echo "$name: up to date ($bin_dir/$name)"
  exit 0
fi
[ "$mode" != check ] || exit 1

if ! go=$(find_go); then
  if [ -z "$go" ]; then
    echo "$name: needs Go on PATH: run \`bash deploy/install-tools.sh\` (installs Debian's golang-go)" \
      "or install Go >= 1.$MIN_MINOR (https://go.dev/doc/install); then run: bash deploy/tools/install-$name.sh" >&2
    exit 1
  fi
  fetch_toolchain "$go"
  go="$toolchain_dir/bin/go"
fi

mkdir -p "$bin_dir"
start=$(date +%s)
echo "$name: building with $("$go" env GOVERSION) (modules from $("$go" env GOPROXY)) ..."
# -mod=readonly: go.sum pins every module; CGO off: a static binary, no C toolchain needed.
# GOTOOLCHAIN=local: this Go builds (>= 1.24 already), no switch to another download.
# Its output (a line per module downloaded) is shown only when the build fails.
log=$(mktemp)
if ! (cd "$src" && CGO_ENABLED=0 GOTOOLCHAIN=local "$go" build -mod=readonly -trimpath -o "$bin_dir/.$name.tmp" .) >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "$name: the build failed (see above)" >&2
  exit 1
fi
rm -f "$log"
mv -f "$bin_dir/.$name.tmp" "$bin_dir/$name"
echo "$hash" >"$bin_dir/.$name.sha256"
echo "$name: built in $(($(date +%s) - start)) s -> $bin_dir/$name"
