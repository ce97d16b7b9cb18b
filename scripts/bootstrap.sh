#!/usr/bin/env bash
# Sets animote up on a Debian or Ubuntu machine, idempotently:
#   1. the Debian packages the pipeline calls (ffmpeg, festival with three voices, espeak-ng;
#      with --tests also chromium, for the report's browser test, and SLURM with munge, for the
#      cluster test), installed when missing
#      (as root, or through passwordless sudo; otherwise it says what to install);
#   2. a virtual environment in .venv with the pinned set in envs/requirements.lock, and animote itself.
# Re-running it does nothing unless envs/requirements.lock or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k espeak-ng)
if [ "${1:-}" = "--tests" ]; then
  APT_PACKAGES+=(chromium)  # the report test opens the report in a real headless browser
  APT_PACKAGES+=(slurmctld slurmd slurm-client munge)  # the cluster test starts a throwaway SLURM
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"
  else
    echo "animote needs these Debian packages, which are missing: ${missing[*]}" >&2
    echo "Install them (as root): apt-get update && apt-get install -y ${missing[*]}" >&2
    echo "then run this again." >&2
    exit 1
  fi
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "animote needs Python 3.11 (mediapipe 0.10.21 and the pinned set); $PY is $("$PY" --version 2>&1)." >&2
  echo "Set PYTHON=/path/to/python3.11 and run this again." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.animote-$(cat envs/requirements.lock envs/nodeps.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing the pinned Python environment into .venv (a few minutes the first time)"
  pip_install() {  # quiet unless it fails
    local out
    if ! out=$(.venv/bin/python -m pip install -q "$@" 2>&1); then
      echo "$out" | grep -v "is ignored: it is neither" >&2
      echo "bootstrap: pip install $* failed" >&2
      return 1
    fi
  }
  pip_install --upgrade "pip==25.3"
  pip_install -r envs/requirements.lock
  pip_install --no-deps --require-hashes -r envs/nodeps.lock  # the Face Landmarker bundle (mesh.tracker: landmarker)
  pip_install --no-deps -e .
  rm -f .venv/.animote-*
  touch "$stamp"
fi
echo "bootstrap: ready (.venv, $(.venv/bin/python --version), ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3))"
