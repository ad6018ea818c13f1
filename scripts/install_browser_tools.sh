#!/usr/bin/env bash
# What the browser tests need (tests/browser, tests/support/browser.py):
#   - Chromium and its WebDriver from Debian packages (chromium, chromium-driver),
#     installed with apt when missing; Selenium is given the driver, so it never
#     downloads a browser;
#   - axe-core from npm, at the version tests/browser/package-lock.json pins (npm ci),
#     with Node.js and npm from Debian when missing.
# Idempotent: a machine that has everything is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "installing ${missing[*]} with apt" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

browser_dir=tests/browser
stamp=$browser_dir/node_modules/.installed
if [[ ! -f $stamp || $browser_dir/package-lock.json -nt $stamp ]]; then
  npm ci --prefix "$browser_dir" --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
