#!/usr/bin/env bash
# Creates (or refreshes) the venv holding validators whose dependencies conflict with the
# project's own: checkov (see tests/deploy/requirements-checkov.txt). tests/deploy finds it at
# .venv/deploy-tools (or at $PQL_DEPLOY_TOOLS_VENV).
#   scripts/deploy-tools-venv.sh [VENV_DIR]       default: .venv/deploy-tools
# Re-installs only when the requirements file changed. Called by `make venv`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-${PQL_DEPLOY_TOOLS_VENV:-.venv/deploy-tools}}"
req=tests/deploy/requirements-checkov.txt
py="${PY:-python3}"
stamp="$dir/.installed"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$dir/bin/checkov" ]; then
  exit 0
fi
test -x "$dir/bin/python" || "$py" -m venv "$dir"
"$dir/bin/python" -m pip install -q --upgrade pip
"$dir/bin/python" -m pip install -q -r "$req"
"$dir/bin/python" -m pip check
"$dir/bin/checkov" --version >/dev/null
echo "$want" > "$stamp"
echo "deploy tools venv ready: $dir (checkov $("$dir/bin/checkov" --version))"
