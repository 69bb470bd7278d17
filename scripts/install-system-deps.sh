#!/usr/bin/env bash
# Installs the system programs Kustos's tests start for themselves, when missing.
# Tests run their own throwaway instances on loopback; nothing here starts a service.
set -euo pipefail

need=()
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v age >/dev/null 2>&1 || need+=(age)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
# the web console's browser tests: a real headless Chromium and its WebDriver
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# Go's own text/template and sprig, built offline, for the differential test of kustos.gitops.gotext
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || need+=(golang-github-masterminds-sprig-dev)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]} (run as root, or install them: apt-get install ${need[*]})" >&2
  exit 1
fi

echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
