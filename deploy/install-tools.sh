#!/usr/bin/env bash
# Everything the test suite needs besides Python and make, installed when missing. `make
# setup` runs it, and `make test` runs `make setup` first, so a machine with only the
# README's requirements runs the whole suite.
#
#   Debian / Ubuntu packages, with apt (root or sudo), only the ones whose command is missing:
#     python3-venv             python3 -m venv  (Debian's python3 only; `make install` makes .venv)
#     openjdk-17-jdk-headless  java (>= 17)  the real Kafka broker of the integration tests
#     maven                    mvn           resolves the broker's jars once
#     openssl                  openssl       test certificates, the SASL_SSL broker
#     prometheus               promtool      rule and config tests; `prometheus` for the live test
#     prometheus-alertmanager  amtool        config tests; `prometheus-alertmanager` for the router test
#     chromium                 chromium      the HTML report's test in a real headless browser
#     golang-go                go            only when a Go validator must be built and no Go is found
#   composecheck, k8svalidate  (deploy/tools/install-*.sh) -> ~/.cache/streamon/tools/bin
#   the Kafka broker jars      (deploy/kafka/broker.py fetch) -> ~/.cache/streamon/kafka-<version>
#
# Idempotent: when everything is in place it checks in about a second and prints one line;
# otherwise it says what it installs. `apt-get update` runs at most once, only when a
# package is missing. Usage: bash deploy/install-tools.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}

java_major() { # the major version of the java the broker would run (JAVA_HOME first), or 0
  local java=${JAVA_HOME:+$JAVA_HOME/bin/java}
  java=${java:-$(command -v java || true)}
  [ -n "$java" ] && [ -x "$java" ] || { echo 0; return; }
  # 'openjdk version "17.0.15" ...' -> 17; the old '"1.8.0_x"' style -> 1 (too old anyway).
  "$java" -version 2>&1 | sed -n '1s/^[^"]*"\([0-9]*\).*/\1/p' | grep . || echo 0
}

have() { command -v "$1" >/dev/null 2>&1; }

missing_packages() {
  # Debian's python3 makes venvs (`make install`) only with python3-venv.
  "$PYTHON" -c 'import ensurepip' 2>/dev/null || echo python3-venv
  [ "$(java_major)" -ge 17 ] || echo openjdk-17-jdk-headless
  have mvn || echo maven
  have openssl || echo openssl
  { have promtool && have prometheus; } || echo prometheus
  { have amtool && { have prometheus-alertmanager || have alertmanager; }; } || echo prometheus-alertmanager
  have chromium || echo chromium
  if ! { bash deploy/tools/go-tool.sh --check composecheck && bash deploy/tools/go-tool.sh --check k8svalidate; }; then
    local rc=0
    bash deploy/tools/go-tool.sh --find-go >/dev/null || rc=$?
    # 2: no Go at all. An older Go (1) is enough: go-tool.sh fetches a newer toolchain with it.
    [ "$rc" -ne 2 ] || echo golang-go
  fi
}

mapfile -t missing < <(missing_packages)
installed=()
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    have sudo || {
      echo "setup: needs root or sudo to install ${missing[*]} (apt-get install ${missing[*]})" >&2
      exit 1
    }
    SUDO="sudo"
  fi
  have apt-get || {
    echo "setup: no apt-get: install ${missing[*]} (Debian package names) another way, then retry" >&2
    exit 1
  }
  echo "setup: installing ${missing[*]} (apt)"
  # Only the CLI tools are wanted: keep the packages' maintainer scripts from starting the
  # prometheus / alertmanager daemons (ports 9090 / 9093) through invoke-rc.d, with a
  # temporary policy-rc.d unless the system already has one.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  # -qq: errors only; sudo resets the environment, hence `env` for DEBIAN_FRONTEND.
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  hash -r
  mapfile -t still < <(missing_packages)
  if [ ${#still[@]} -gt 0 ]; then
    echo "setup: still missing after apt-get install: ${still[*]} (is the command on PATH?)" >&2
    exit 1
  fi
  installed+=("${missing[@]}")
fi

for tool in composecheck k8svalidate; do
  if ! bash deploy/tools/go-tool.sh --check "$tool"; then
    # A cold build takes ~35 s (composecheck) and 1.5-2.5 min (k8svalidate) on 2 cores.
    bash "deploy/tools/install-$tool.sh"
    installed+=("$tool")
  fi
done

if ! "$PYTHON" -c 'import sys; sys.path.insert(0, "deploy/kafka"); import broker
sys.exit(not (broker.cache_dir() / ".complete").exists())'; then
  echo "setup: fetching the Kafka broker jars from Maven Central (~15 s) ..."
  "$PYTHON" deploy/kafka/broker.py fetch
  installed+=("Kafka broker jars")
fi

if [ ${#installed[@]} -eq 0 ]; then
  echo "setup: in place: java $(java_major), mvn, openssl, promtool, amtool, prometheus, alertmanager," \
    "chromium, composecheck, k8svalidate, Kafka broker jars"
else
  echo "setup: installed ${installed[*]}"
fi
