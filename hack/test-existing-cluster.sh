#!/usr/bin/env bash
# The cluster suite (test/cluster/) in its existing-cluster mode, proven on this machine: a
# cluster is started apart with `hack/cluster.sh up`, then the suite runs against it as it would
# against kind or k3d on a laptop, with
#
#   USE_EXISTING_CLUSTER=true
#   KUBECONFIG=DIR/kubeconfig
#   CARDINAL_IMAGE_LOAD='ctr --address DIR/run/containerd.sock -n k8s.io images import {}'
#
# so the suite starts and stops nothing and loads every image through the hook (for kind the hook
# is `kind load image-archive {}`, for k3d `k3d image import {}`). The cluster is taken down when
# the suite is done, passed or not, and DIR removed unless KEEP_CLUSTER_DIR=1.
#
# Usage: hack/test-existing-cluster.sh [vitest arguments...]
# It brings up its own cluster, so it must not run while another cluster of hack/cluster.sh is up
# on the machine (`up` refuses then).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
log() { echo "existing-cluster: $*" >&2; }

dir="$(mktemp -d "${TMPDIR:-/tmp}/cardinal-existing-cluster.XXXXXX")"
down() {
  local rc=$?
  start=$SECONDS
  bash "$here/cluster.sh" down "$dir" >&2 || rc=1
  log "down in $((SECONDS - start))s"
  if [[ ${KEEP_CLUSTER_DIR:-0} != 1 ]] && ! grep -q " $dir/" /proc/self/mountinfo; then
    rm -rf --one-file-system "$dir"
  fi
  exit "$rc"
}
trap down EXIT

start=$SECONDS
KUBECONFIG="$(bash "$here/cluster.sh" up "$dir" | sed -n 's/^KUBECONFIG=//p')"
[[ -n $KUBECONFIG ]] || {
  log "hack/cluster.sh up $dir printed no KUBECONFIG"
  exit 1
}
log "cluster up in $((SECONDS - start))s ($dir); running the suite with USE_EXISTING_CLUSTER=true"

export USE_EXISTING_CLUSTER=true KUBECONFIG
export CARDINAL_IMAGE_LOAD="ctr --address $dir/run/containerd.sock -n k8s.io images import {}"
cd "$root"
npx vitest run --project cluster "$@"
