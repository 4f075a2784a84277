#!/usr/bin/env bash
# Build deploy/tools/k8svalidate (strict offline validation of deploy/k8s/*.yaml against the
# Kubernetes API types, the Prometheus operator's ServiceMonitor and mirrored KEDA types) into
# ${STREAMON_TOOLS_BIN:-~/.cache/streamon/tools/bin}. Idempotent; skipped when up to date.
# Usage: bash deploy/tools/install-k8svalidate.sh
exec bash "$(dirname "${BASH_SOURCE[0]}")/go-tool.sh" k8svalidate
