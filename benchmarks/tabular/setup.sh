#!/usr/bin/env bash
# Create benchmarks/.venv-tabular (idempotent): requirements.txt + noisecraft[tabular] (editable).
# Usage (from the repo root): bash benchmarks/tabular/setup.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/benchmarks/.venv-tabular"
marker="import ctgan, noisecraft.tabular, sdmetrics"
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "$marker" >/dev/null 2>&1; then
  echo "[tabular bench] $venv is ready"; exit 0
fi
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install --quiet -r "$here/requirements.txt" -e "$root[tabular]"
"$venv/bin/python" -c "$marker"
echo "[tabular bench] $venv created"
