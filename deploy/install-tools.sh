#!/usr/bin/env bash
# Install the Prometheus tooling the rule / config tests need, from Debian's packages:
#   prometheus               -> promtool  (check config, check rules, test rules)
#   prometheus-alertmanager  -> amtool    (check-config, config routes test)
#
# Idempotent: a package already installed is left alone, and `apt-get update` runs at most
# once, only when something is missing. Needs root (or sudo) only when installing.
# Prints the versions of both tools at the end.
#
# Usage: bash deploy/install-tools.sh
set -euo pipefail

# package -> the binary it provides (checked on PATH and with dpkg).
declare -A BINARY=([prometheus]=promtool [prometheus-alertmanager]=amtool)

missing=()
for pkg in prometheus prometheus-alertmanager; do
  # The Debian package, or the binary installed some other way (tarball), is good enough.
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
    || command -v "${BINARY[$pkg]}" >/dev/null 2>&1; then
    continue
  fi
  missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "install-tools: need root or sudo to install ${missing[*]}" >&2
      exit 1
    }
    SUDO="sudo"
  fi
  echo "install-tools: installing ${missing[*]}"
  # Only the CLI tools are wanted: keep the packages' maintainer scripts from starting the
  # prometheus / alertmanager daemons (ports 9090 / 9093) through invoke-rc.d, with a
  # temporary policy-rc.d unless the system already has one.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

for bin in promtool amtool; do
  if ! command -v "$bin" >/dev/null 2>&1; then
    echo "install-tools: $bin still not on PATH after install" >&2
    exit 1
  fi
done

echo "promtool: $(promtool --version 2>&1 | head -n 1)"
echo "amtool:   $(amtool --version 2>&1 | head -n 1)"
