#!/usr/bin/env bash
# Build deploy/tools/composecheck (`docker compose config` without Docker: compose-go, the
# loader of the docker compose CLI, plus --scale checks) into
# ${STREAMON_TOOLS_BIN:-~/.cache/streamon/tools/bin}. Idempotent; skipped when up to date.
# Usage: bash deploy/tools/install-composecheck.sh
exec bash "$(dirname "${BASH_SOURCE[0]}")/go-tool.sh" composecheck
