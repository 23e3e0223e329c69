#!/usr/bin/env bash
# Copies the alert rules (deploy/monitoring/alerts.yml, the single source) into the Helm chart,
# whose PrometheusRule reads them with .Files.Get: helm packages no symlinks and no files outside
# the chart. tests/deploy checks the copy is identical, so run this after editing the rules.
#   deploy/helm/sync-alerts.sh          copy
#   deploy/helm/sync-alerts.sh --check  exit 1 if the copy differs (CI)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../monitoring/alerts.yml"
dst="$here/pql-streams/files/alerts.yml"
if [ ! -f "$src" ]; then
  echo "missing $src (the alert rules)" >&2
  exit 1
fi
if [ "${1:-}" = "--check" ]; then
  if cmp -s "$src" "$dst"; then exit 0; fi
  echo "$dst differs from deploy/monitoring/alerts.yml: run deploy/helm/sync-alerts.sh" >&2
  exit 1
fi
mkdir -p "$(dirname "$dst")"
cp "$src" "$dst"
echo "copied deploy/monitoring/alerts.yml -> deploy/helm/pql-streams/files/alerts.yml"
