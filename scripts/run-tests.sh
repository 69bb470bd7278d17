#!/usr/bin/env bash
# Runs pytest inside a private network namespace: only loopback exists there, so a
# test (or a real kube-apiserver dialling an address an object names) can reach
# nothing outside this machine. Everything the tests need is installed before this.
# Falls back, with a warning, where a new network namespace is not permitted.
set -uo pipefail
cd "$(dirname "$0")/.."
pytest=(.venv/bin/python -m pytest -q "$@")

if [ -z "${KUBEBUILDER_ASSETS:-}" ]; then
  echo "note: KUBEBUILDER_ASSETS is unset: tests that need a real kube-apiserver + etcd skip" \
       "(export KUBEBUILDER_ASSETS=\$(../shared/k8s/unpack.sh) to run them)" >&2
fi

if [ "${KUSTOS_TEST_NETNS:-1}" != "0" ] && command -v unshare >/dev/null 2>&1 \
   && unshare --net -- true 2>/dev/null; then
  unshare --net -- bash -c 'ip link set lo up && exec "$@"' run-tests "${pytest[@]}"
  rc=$?
else
  echo "warning: cannot create a private network namespace (needs root and unshare);" \
       "running the tests in the host's network namespace" >&2
  "${pytest[@]}"
  rc=$?
fi
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $rc
