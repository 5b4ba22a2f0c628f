#!/usr/bin/env bash
# Sets up MedDL's headless environment in .venv at the repository root. Idempotent: a second run only
# checks that nothing changed. `bash setup.sh test` also installs the test tools: pytest, Playwright, and for
# the browser tests of `meddl web` Debian's chromium and xvfb (apt-get, as root or through sudo).
#
# PyTorch: an already importable torch is kept (the venv then sees the base Python's packages).
# Otherwise MEDDL_TORCH (default torch==2.13.0) is installed; choose the build with MEDDL_TORCH_INDEX:
#   CPU only:  MEDDL_TORCH_INDEX=https://download.pytorch.org/whl/cpu   bash setup.sh
#   CUDA 12.8: MEDDL_TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash setup.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
python=${PYTHON:-python3}
extras=${1:-}

if [ ! -x .venv/bin/python ]; then
  if "$python" -c "import torch" 2>/dev/null; then
    echo "setup: reusing the torch of $python ($("$python" -c 'import torch; print(torch.__version__)'))"
    "$python" -m venv --system-site-packages .venv
  else
    "$python" -m venv .venv
  fi
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing ${MEDDL_TORCH:-torch==2.13.0}"
  "${pip[@]}" install ${MEDDL_TORCH_INDEX:+--index-url "$MEDDL_TORCH_INDEX"} "${MEDDL_TORCH:-torch==2.13.0}"
fi

stamp=.venv/.meddl-setup
want="$(sha256sum pyproject.toml | cut -c1-64) ${extras}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing MedDL and its dependencies into .venv"
  "${pip[@]}" install -e ".${extras:+[$extras]}"
  echo "$want" > "$stamp"
fi
if [ "$extras" = test ] && [ ! -x /usr/bin/chromium ]; then
  sudo=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  if [ -n "$sudo" ] && ! command -v sudo >/dev/null; then
    echo "setup: the browser tests need Debian's chromium and xvfb: apt-get install chromium xvfb" >&2
  else
    echo "setup: installing chromium and xvfb (apt-get) for the browser tests"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium xvfb >/dev/null
  fi
fi
.venv/bin/python -c "import torch, monai, slicer, DLCommon, trame_slicer" || { echo "setup: the environment is incomplete" >&2; exit 1; }
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
