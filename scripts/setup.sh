#!/usr/bin/env bash
# Install everything skinscreen needs on a fresh Debian machine: system packages and a venv.
#   scripts/setup.sh serve   → what the service needs (core dependencies)
#   scripts/setup.sh test    → plus training, MedGemma and test tooling (torch, ultralytics,
#                              PostgreSQL for the job-store tests, …)
# Idempotent: a stamp file per profile skips work when pyproject.toml has not changed.
set -euo pipefail
profile="${1:-serve}"
cd "$(dirname "$0")/.."

# fonts-noto-core: Noto Sans Thai, Devanagari, Ethiopic, Arabic, Hebrew (patient names in the PDF)
APT_SERVE=(libharfbuzz-subset0 libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core fonts-noto-cjk
  fonts-noto-core)
# postgresql: the server binaries only; tests start throwaway clusters (tests/support/postgres.py)
APT_TEST=(poppler-utils dicom3tools dcmtk chromium postgresql)

need=()
pkgs=("${APT_SERVE[@]}")
[ "$profile" = test ] && pkgs+=("${APT_TEST[@]}")
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "==> apt-get install ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || { echo "==> creating .venv with $PYTHON"; "$PYTHON" -m venv .venv; }

extras=""
[ "$profile" = test ] && extras="[train,medgemma,dev]"
stamp=".venv/.skinscreen-$profile-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> pip install -e .$extras (first time: several minutes)"
  .venv/bin/pip install -q --upgrade pip wheel
  if [ "$profile" = test ]; then
    # torch first, pinned: otherwise ultralytics pulls an unpinned CUDA build (see shared/ML.md).
    .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
  fi
  .venv/bin/pip install -q -e ".$extras"
  touch "$stamp"
fi
