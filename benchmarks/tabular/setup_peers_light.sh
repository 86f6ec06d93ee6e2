#!/usr/bin/env bash
# A light peer environment for sample_1m.py: benchmarks/.venv-ctgan with ctgan (CTGAN, TVAE) installed on top of the
# project's own .venv through a .pth file, so torch (the CPU build already in .venv) is shared instead of downloading
# a second torch. Idempotent. Usage (repo root): bash benchmarks/tabular/setup_peers_light.sh
# (benchmarks/tabular/setup.sh builds the full, independent environment of run.py instead.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/benchmarks/.venv-ctgan"
base="$root/.venv"
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "import ctgan, torch" >/dev/null 2>&1; then
  echo "[ctgan light] $venv is ready"; exit 0
fi
"$("$base/bin/python" -c 'import sys; print(sys._base_executable)')" -m venv "$venv"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/_project_venv.pth"
"$venv/bin/pip" install --quiet "ctgan==0.12.1"
"$venv/bin/python" -c "import ctgan, torch; print('[ctgan light] ctgan', ctgan.__version__, 'torch', torch.__version__)"
