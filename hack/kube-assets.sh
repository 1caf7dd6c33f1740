#!/usr/bin/env bash
# Makes the local Kubernetes control plane binaries available, the envtest way, and says where
# they are.
#
# Usage:
#   hack/kube-assets.sh                # prints KUBEBUILDER_ASSETS=<dir> and CARDINAL_HELM=<path>
#   hack/kube-assets.sh --print-env    # prints the same as `export KEY='VALUE'` lines, for
#                                      #   eval "$(hack/kube-assets.sh --print-env)"
#   hack/kube-assets.sh --node [--print-env]
#                                      # also the node's binaries (hack/cluster.sh uses them) and
#                                      #   prints CARDINAL_KUBE_NODE_DIR=<dir> too
#
# Only those lines go to stdout; progress and build output go to stderr.
#
# KUBEBUILDER_ASSETS is a directory holding kube-apiserver, etcd and kubectl, as envtest
# (controller-runtime's setup-envtest) lays it out. CARDINAL_HELM is the path of a helm binary.
#
# Where they come from:
#   * If KUBEBUILDER_ASSETS is set and holds all three binaries, it is used as is. Likewise
#     CARDINAL_HELM, if it is set and executable.
#   * Otherwise they are built from their Go modules (CGO_ENABLED=0, -trimpath) into a cache
#     outside the checkout, once per machine:
#       $CACHE/kube/<kubernetes version>/{kube-apiserver,kubectl,etcd}
#       $CACHE/helm/<helm version>/helm
#     with CACHE=${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}.
#     When they are already there the script prints and exits at once.
#
# How they are built:
#   * kube-apiserver and kubectl: k8s.io/kubernetes/cmd/{kube-apiserver,kubectl} at
#     v$KUBE_VERSION. k8s.io/kubernetes replaces each k8s.io/* staging module with
#     ./staging/src/..., which does not work when it is a dependency, so the build runs in a
#     throwaway main module that replaces every one of them (read from k8s.io/kubernetes's own
#     go.mod) with its published version v0.<minor>.<patch>. Version strings are stamped the
#     way Kubernetes' own build does (k8s.io/component-base/version, k8s.io/client-go/pkg/version),
#     so /version and `kubectl version` report the real version.
#   * etcd: the main package at the root of module go.etcd.io/etcd/server/v3 (its main.go calls
#     etcdmain.Main), in a throwaway main module, since its go.mod carries replace directives.
#     The version is the one Kubernetes $KUBE_VERSION ships with (build/dependencies.yaml).
#   * helm: helm.sh/helm/v3/cmd/helm, with the ldflags helm's Makefile sets.
#   * With --node, into CARDINAL_KUBE_NODE_DIR=$CACHE/kube-node/<kubernetes version>:
#       kubelet, kube-controller-manager, kube-scheduler, kube-proxy   the same trick and stamps
#                                      as kube-apiserver (they share most of its build cache)
#       crictl     sigs.k8s.io/cri-tools/cmd/crictl at v$CRICTL_VERSION
#       coredns    CoreDNS v$COREDNS_VERSION as a library: a main package of ours (written out
#                  below) that links only the plugins the cluster's Corefile uses (errors,
#                  health, ready, kubernetes, cache, loadbalance), the way CoreDNS documents
#                  compile-time plugin selection; the full binary links every cloud SDK.
#     They are separate from KUBEBUILDER_ASSETS so that an envtest directory given there still
#     works for the control-plane tests.
#
# Environment:
#   KUBE_VERSION, ETCD_VERSION, HELM_VERSION  override the pins below
#   CRICTL_VERSION, COREDNS_VERSION           likewise (--node)
#   CARDINAL_CACHE_DIR                        the cache root (see above)
#   CARDINAL_BUILD_NICE                       niceness of the go builds (default 19, so a
#                                             build only takes idle CPU)
#   GOFLAGS, GOPROXY, GOTOOLCHAIN, ...        passed through to go (-mod=mod is added)
#
# A first build takes about 5 minutes on 2 cores with an empty Go build cache (kube-apiserver
# ~3.5 min, kubectl ~20 s, etcd ~15 s, helm ~1 min; modules already downloaded) and needs ~3 GB
# of Go build cache. The binaries come out byte-identical from build to build. Concurrent runs
# wait on a lock in the cache instead of building twice.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-3.6.5}"
HELM_VERSION="${HELM_VERSION:-3.19.5}"
CRICTL_VERSION="${CRICTL_VERSION:-1.34.0}"
COREDNS_VERSION="${COREDNS_VERSION:-1.12.4}"
NODE_BINARIES=(kubelet kube-controller-manager kube-scheduler kube-proxy)

mode=plain
node=false
for arg in "$@"; do
  case "$arg" in
    --print-env) mode="export" ;;
    --node) node=true ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: $0 [--node] [--print-env]" >&2
      exit 2
      ;;
  esac
done

log() { echo "kube-assets: $*" >&2; }

emit() {
  if [[ $mode == export ]]; then
    printf "export %s='%s'\n" "$1" "$2"
  else
    printf '%s=%s\n' "$1" "$2"
  fi
}

has_kube_bins() {
  [[ -n $1 && -x $1/kube-apiserver && -x $1/etcd && -x $1/kubectl ]]
}

cache="${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}"
kube_dir="$cache/kube/$KUBE_VERSION"
helm_dir="$cache/helm/$HELM_VERSION"
helm_bin="$helm_dir/helm"
node_dir="$cache/kube-node/$KUBE_VERSION"
node_stamp="$node_dir/.versions"
node_versions="crictl=$CRICTL_VERSION coredns=$COREDNS_VERSION"
node_cached() {
  local name
  for name in "${NODE_BINARIES[@]}" crictl coredns; do [[ -x $node_dir/$name ]] || return 1; done
  [[ -f $node_stamp && "$(cat "$node_stamp")" == "$node_versions" ]]
}

# The etcd in kube_dir is tied to ETCD_VERSION by a stamp, so changing the etcd pin alone
# rebuilds it.
etcd_stamp="$kube_dir/.etcd-version"
kube_cached() {
  has_kube_bins "$kube_dir" && [[ -f $etcd_stamp && "$(cat "$etcd_stamp")" == "$ETCD_VERSION" ]]
}

assets=""
if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
  if has_kube_bins "$KUBEBUILDER_ASSETS"; then
    assets="$KUBEBUILDER_ASSETS"
  else
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver, etcd or kubectl; using the cache"
  fi
fi
if [[ -z $assets ]] && kube_cached; then assets="$kube_dir"; fi

helm=""
if [[ -n ${CARDINAL_HELM:-} ]]; then
  if [[ -x $CARDINAL_HELM && ! -d $CARDINAL_HELM ]]; then
    helm="$CARDINAL_HELM"
  else
    log "CARDINAL_HELM=$CARDINAL_HELM is not an executable; using the cache"
  fi
fi
if [[ -z $helm && -x $helm_bin ]]; then helm="$helm_bin"; fi

# Fast path: nothing to build.
if [[ -n $assets && -n $helm ]] && { [[ $node == false ]] || node_cached; }; then
  emit KUBEBUILDER_ASSETS "$assets"
  emit CARDINAL_HELM "$helm"
  [[ $node == false ]] || emit CARDINAL_KUBE_NODE_DIR "$node_dir"
  exit 0
fi

command -v go >/dev/null || { log "go is needed to build the binaries and is not on PATH"; exit 1; }

mkdir -p "$cache"
# take_lock FD NAME: one build per machine at a time; a second run waits here, then finds the
# binaries built.
take_lock() {
  command -v flock >/dev/null || return 0
  eval "exec $1>\"\$cache/$2\""
  if ! flock -n "$1"; then
    log "another build holds $cache/$2; waiting for it"
    flock "$1"
  fi
}

export CGO_ENABLED=0 GOWORK=off GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
nice_cmd=(nice -n "${CARDINAL_BUILD_NICE:-19}")
scratch=()
cleanup() { ((${#scratch[@]})) && rm -rf "${scratch[@]}"; return 0; }
trap cleanup EXIT

# new_module NAME: makes a throwaway main module and cds into it.
new_module() {
  local dir
  dir="$(mktemp -d "${TMPDIR:-/tmp}/cardinal-$1.XXXXXX")"
  scratch+=("$dir")
  cd "$dir"
  printf 'module cardinal.dev/build/%s\n\ngo 1.24.0\n' "$1" >go.mod
}

# timed LABEL CMD...: runs CMD niced and logs how long it took.
timed() {
  local label="$1" start=$SECONDS
  shift
  log "$label"
  "${nice_cmd[@]}" "$@" >&2
  log "$label: done in $((SECONDS - start))s"
}

# install_into DIR TMP NAME...: moves freshly built binaries from TMP into DIR, each atomically.
install_into() {
  local dir="$1" tmp="$2" name
  shift 2
  for name in "$@"; do mv -f "$tmp/$name" "$dir/$name"; done
  rm -rf "$tmp"
}

# build_kubernetes DIR NAME...: builds the k8s.io/kubernetes commands NAME... missing from DIR.
build_kubernetes() {
  local dir="$1" need=() name
  shift
  for name in "$@"; do [[ -x $dir/$name ]] || need+=("$name"); done
  ((${#need[@]})) || return 0
  local mod="k8s.io/kubernetes" ver="v$KUBE_VERSION"
  local major minor patch
  IFS=. read -r major minor patch <<<"$KUBE_VERSION"
  local staging_ver="v0.$minor.$patch"
  new_module kubernetes
  log "downloading $mod@$ver"
  local gomod
  gomod="$(go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f $gomod ]] || { log "no go.mod for $mod@$ver"; exit 1; }
  # Every `k8s.io/xxx => ./staging/src/k8s.io/xxx` in Kubernetes' go.mod becomes
  # `k8s.io/xxx => k8s.io/xxx v0.<minor>.<patch>` here. (Replacements of modules the build does
  # not reach, such as the sample-* ones, are never fetched.)
  local staging
  staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' "$gomod")"
  [[ -n $staging ]] || { log "found no staging replacements in $gomod"; exit 1; }
  {
    # Same GODEBUG defaults as Kubernetes' own main module.
    sed -n 's/^godebug /godebug /p' "$gomod"
    echo "replace ("
    for name in $staging; do echo "	$name => $name $staging_ver"; done
    echo ")"
  } >>go.mod
  local pkgs=()
  for name in "${need[@]}"; do pkgs+=("$mod/cmd/$name@$ver"); done
  timed "resolving modules for ${need[*]} $ver" go get "${pkgs[@]}"
  # Kubernetes' hack/lib/version.sh stamps these; the module's publication time stands in for
  # the build date so that the binaries are reproducible.
  local date
  date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(dirname "$gomod")/$ver.info" 2>/dev/null || true)"
  date="${date:-1970-01-01T00:00:00Z}"
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$ver -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${date%%.*}"
  done
  mkdir -p "$dir"
  local tmp="$dir/.tmp-$$"
  mkdir -p "$tmp"
  for name in "${need[@]}"; do
    timed "building $name $ver" go build -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$mod/cmd/$name"
  done
  install_into "$dir" "$tmp" "${need[@]}"
  cd /
}

build_etcd() {
  if [[ -x $kube_dir/etcd && -f $etcd_stamp && "$(cat "$etcd_stamp")" == "$ETCD_VERSION" ]]; then return 0; fi
  local mod="go.etcd.io/etcd/server/v3" ver="v$ETCD_VERSION"
  new_module etcd
  timed "resolving modules for etcd $ver" go get "$mod@$ver"
  mkdir -p "$kube_dir"
  local tmp="$kube_dir/.tmp-$$"
  mkdir -p "$tmp"
  timed "building etcd $ver" go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" "$mod"
  install_into "$kube_dir" "$tmp" etcd
  printf '%s\n' "$ETCD_VERSION" >"$etcd_stamp.tmp"
  mv -f "$etcd_stamp.tmp" "$etcd_stamp"
  cd /
}

build_helm() {
  [[ -x $helm_bin ]] && return 0
  local mod="helm.sh/helm/v3" ver="v$HELM_VERSION"
  new_module helm
  timed "resolving modules for helm $ver" go get "$mod/cmd/helm@$ver"
  # As helm's Makefile: the default Kubernetes version for `helm template` and `helm lint`
  # is the one its client-go (v0.<minor>) stands for.
  local cg kmajor kminor
  cg="$(go list -m -f '{{.Version}}' k8s.io/client-go)"
  IFS=. read -r kmajor kminor _ <<<"${cg#v}"
  kmajor=$((kmajor + 1))
  local ldflags="-s -w -X $mod/internal/version.version=$ver -X $mod/internal/version.gitTreeState=clean"
  local pkg
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X $mod/$pkg.k8sVersionMajor=$kmajor -X $mod/$pkg.k8sVersionMinor=$kminor"
  done
  mkdir -p "$helm_dir"
  local tmp="$helm_dir/.tmp-$$"
  mkdir -p "$tmp"
  timed "building helm $ver" go build -trimpath -ldflags "$ldflags" -o "$tmp/helm" "$mod/cmd/helm"
  install_into "$helm_dir" "$tmp" helm
  cd /
}

# The node's versions are tied to their pins by a stamp, so changing a pin rebuilds.
build_crictl() {
  local stamp="$node_dir/.crictl-version"
  [[ -x $node_dir/crictl && -f $stamp && "$(cat "$stamp")" == "$CRICTL_VERSION" ]] && return 0
  local mod="sigs.k8s.io/cri-tools" ver="v$CRICTL_VERSION"
  new_module crictl
  timed "resolving modules for crictl $ver" go get "$mod/cmd/crictl@$ver"
  mkdir -p "$node_dir"
  local tmp="$node_dir/.tmp-$$"
  mkdir -p "$tmp"
  timed "building crictl $ver" go build -trimpath -ldflags "-s -w -X $mod/pkg/version.Version=$ver" \
    -o "$tmp/crictl" "$mod/cmd/crictl"
  install_into "$node_dir" "$tmp" crictl
  printf '%s\n' "$CRICTL_VERSION" >"$stamp"
  cd /
}

build_coredns() {
  local stamp="$node_dir/.coredns-version"
  [[ -x $node_dir/coredns && -f $stamp && "$(cat "$stamp")" == "$COREDNS_VERSION" ]] && return 0
  local mod="github.com/coredns/coredns" ver="v$COREDNS_VERSION"
  new_module coredns
  # The plugins in the order of CoreDNS's plugin.cfg: the order of dnsserver.Directives is the
  # order a query runs through them, whatever the order in the Corefile.
  cat >main.go <<'GO'
// Generated by hack/kube-assets.sh: CoreDNS with the cluster's plugins only.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
  timed "resolving modules for coredns $ver" go get "$mod@$ver"
  timed "tidying the coredns module" go mod tidy
  mkdir -p "$node_dir"
  local tmp="$node_dir/.tmp-$$"
  mkdir -p "$tmp"
  timed "building coredns $ver" go build -trimpath -ldflags "-s -w -X $mod/coremain.GitCommit=$ver" \
    -o "$tmp/coredns" .
  install_into "$node_dir" "$tmp" coredns
  printf '%s\n' "$COREDNS_VERSION" >"$stamp"
  cd /
}

# crictl and CoreDNS share nothing with the Kubernetes builds, so they do not wait for them.
if [[ $node == true ]] && ! node_cached; then
  take_lock 8 .kube-node-tools.lock
  build_crictl
  build_coredns
fi

take_lock 9 .kube-assets.lock
if [[ -z $assets ]]; then
  log "building Kubernetes $KUBE_VERSION control plane binaries and etcd $ETCD_VERSION into $kube_dir"
  build_kubernetes "$kube_dir" kube-apiserver kubectl
  build_etcd
  kube_cached || { log "build finished but $kube_dir is incomplete"; exit 1; }
  assets="$kube_dir"
fi
if [[ -z $helm ]]; then
  log "building helm $HELM_VERSION into $helm_dir"
  build_helm
  helm="$helm_bin"
fi

# The control plane is what every other test needs: let a waiting run have it before the
# node's build starts.
if command -v flock >/dev/null; then flock -u 9; fi
if [[ $node == true ]] && ! node_cached; then
  take_lock 7 .kube-node.lock
  log "building the node's binaries into $node_dir"
  build_kubernetes "$node_dir" "${NODE_BINARIES[@]}"
  printf '%s\n' "$node_versions" >"$node_stamp.tmp"
  mv -f "$node_stamp.tmp" "$node_stamp"
  node_cached || { log "build finished but $node_dir is incomplete"; exit 1; }
fi

emit KUBEBUILDER_ASSETS "$assets"
emit CARDINAL_HELM "$helm"
[[ $node == false ]] || emit CARDINAL_KUBE_NODE_DIR "$node_dir"
