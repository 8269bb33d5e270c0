#!/usr/bin/env bash
# Build the sdist and wheel, twine check --strict them, install the wheel into a fresh virtualenv
# with only its declared dependencies, and check the provider, entry points, emulator command and
# example DAG imports there (scripts/release_check.py). About 1 minute with a warm uv cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/release_check.py "$@"
