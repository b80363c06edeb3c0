#!/usr/bin/env bash
# Installs what the web demo's end-to-end test needs, idempotently: Debian's chromium (the test
# drives /usr/bin/chromium through playwright-core; `npx playwright install` cannot download
# browsers here), a colour emoji font, and the pinned npm packages of web-demo/package-lock.json.
# A second run does nothing: no apt-get, no npm.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup-e2e: node and npm are required (Node.js 20 or later)" >&2
  exit 1
fi

# chromium, and a colour emoji font so that reactions show in the screenshots.
packages=(chromium fonts-noto-color-emoji)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  # `apt-get update` only when the package lists do not know the packages yet.
  for package in "${missing[@]}"; do
    if ! apt-cache show "$package" >/dev/null 2>&1; then
      $sudo apt-get update
      break
    fi
  done
  install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; }
  # Stale package lists name versions the mirror no longer has: refresh once and retry.
  install || { $sudo apt-get update && install; }
fi

# npm ci wipes and reinstalls node_modules; skip it when the installed tree matches the lock.
if ! cmp -s package-lock.json node_modules/.confab-installed-lock 2>/dev/null; then
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.confab-installed-lock
fi
