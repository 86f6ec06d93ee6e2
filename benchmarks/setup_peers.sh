#!/usr/bin/env bash
# Create the peer virtual environments used by the benchmarks, idempotently.
#   benchmarks/.venv-diffusers : torch 2.13 + diffusers 0.42.1 + scikit-learn + noisecraft (editable)
#   benchmarks/.venv-ddpm      : torch 2.14.1 + torchvision 0.29.1 + denoising-diffusion-pytorch
# Re-running is cheap: an environment whose marker import already works is left alone.
# Usage (from the repo root): bash benchmarks/setup_peers.sh [diffusers|ddpm|all]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"
which="${1:-all}"

make_venv() {  # make_venv <dir> <marker python statement> <pip args...>
  local dir="$1" marker="$2"; shift 2
  if [[ -x "$dir/bin/python" ]] && "$dir/bin/python" -c "$marker" >/dev/null 2>&1; then
    echo "[setup_peers] $dir is ready"; return 0
  fi
  echo "[setup_peers] creating $dir"
  "$python" -m venv "$dir"
  "$dir/bin/pip" install --quiet "$@"
  "$dir/bin/python" -c "$marker"
}

if [[ "$which" == all || "$which" == diffusers ]]; then
  make_venv "$here/.venv-diffusers" "import diffusers, sklearn, noisecraft; assert diffusers.__version__ == '0.42.1'" \
    torch==2.13.0 diffusers==0.42.1 scikit-learn -e "$root"
fi
if [[ "$which" == all || "$which" == ddpm ]]; then
  make_venv "$here/.venv-ddpm" "import denoising_diffusion_pytorch, torchvision" \
    torch==2.14.1 torchvision==0.29.1 denoising-diffusion-pytorch
fi
