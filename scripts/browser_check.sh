#!/usr/bin/env bash
# Check the connection form and the trigger form in a real browser (see scripts/browser_check.py).
# Installs what it needs first: Debian's chromium and chromium-driver (apt, as root) when missing,
# and the [browser] extra (selenium) into .venv. Screenshots land in .browser-check/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "browser-check: installing Debian's chromium and chromium-driver" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
bash scripts/bootstrap.sh
UV="uv"
command -v uv >/dev/null 2>&1 || UV="${PYTHON:-python3} -m uv"
$UV pip install --quiet --python .venv/bin/python -e ".[browser]" >&2
exec .venv/bin/python scripts/browser_check.py "$@"
