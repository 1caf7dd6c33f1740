#!/usr/bin/env bash
# Makes the local Kubernetes control plane binaries available, the envtest way, and says where
# they are.
#
# Usage:
#   hack/kube-assets.sh                # prints KUBEBUILDER_ASSETS=<dir> and CARDINAL_HELM=<path>
#   hack/kube-assets.sh --print-env    # prints the same as `export KEY='VALUE'` lines, for
#                                      #   eval "$(hack/kube-assets.sh --print-env)"
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
#
# Environment:
#   KUBE_VERSION, ETCD_VERSION, HELM_VERSION  override the pins below
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

mode=plain
case "${1:-}" in
  "") ;;
  --print-env) mode="export" ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--print-env]" >&2
    exit 2
    ;;
esac

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
if [[ -n $assets && -n $helm ]]; then
  emit KUBEBUILDER_ASSETS "$assets"
  emit CARDINAL_HELM "$helm"
  exit 0
fi

command -v go >/dev/null || { log "go is needed to build the binaries and is not on PATH"; exit 1; }

mkdir -p "$cache"
# One build per machine at a time: a second run waits here, then finds the binaries built.
if command -v flock >/dev/null; then
  exec 9>"$cache/.kube-assets.lock"
  if ! flock -n 9; then
    log "another build holds $cache/.kube-assets.lock; waiting for it"
    flock 9
  fi
fi

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

build_kubernetes() {
  local need=() name
  for name in kube-apiserver kubectl; do [[ -x $kube_dir/$name ]] || need+=("$name"); done
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
  timed "resolving modules for kube-apiserver and kubectl $ver" \
    go get "$mod/cmd/kube-apiserver@$ver" "$mod/cmd/kubectl@$ver"
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
  mkdir -p "$kube_dir"
  local tmp="$kube_dir/.tmp-$$"
  mkdir -p "$tmp"
  for name in "${need[@]}"; do
    timed "building $name $ver" go build -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$mod/cmd/$name"
  done
  install_into "$kube_dir" "$tmp" "${need[@]}"
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

if [[ -z $assets ]]; then
  log "building Kubernetes $KUBE_VERSION control plane binaries and etcd $ETCD_VERSION into $kube_dir"
  build_kubernetes
  build_etcd
  kube_cached || { log "build finished but $kube_dir is incomplete"; exit 1; }
  assets="$kube_dir"
fi
if [[ -z $helm ]]; then
  log "building helm $HELM_VERSION into $helm_dir"
  build_helm
  helm="$helm_bin"
fi

emit KUBEBUILDER_ASSETS "$assets"
emit CARDINAL_HELM "$helm"
