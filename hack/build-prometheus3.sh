#!/usr/bin/env bash
# Builds a Prometheus 3.x binary from its Go module and caches it outside the checkout,
# so the build happens once per machine. Prints the binary's path.
#
# Prometheus 3.X.Y is version v0.30X.Y of the Go module github.com/prometheus/prometheus.
# The module's own go.mod carries a replace directive, which `go install pkg@version` refuses,
# so the build runs inside a throwaway main module that repeats that directive.
set -euo pipefail
version="${PROMETHEUS3_VERSION:-3.5.0}"
IFS=. read -r major minor patch <<<"$version"
module_version="v0.$((major * 100 + minor)).${patch}"
cache="${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}/bin"
out="$cache/prometheus-$version"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
cat >go.mod <<MOD
module cardinal.dev/build/prometheus3

go 1.23

replace github.com/fsnotify/fsnotify v1.8.0 => github.com/fsnotify/fsnotify v1.7.0
MOD
export GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
go get "github.com/prometheus/prometheus/cmd/prometheus@${module_version}" >&2
CGO_ENABLED=0 go build -trimpath -o "$out.tmp" github.com/prometheus/prometheus/cmd/prometheus >&2
mv "$out.tmp" "$out"
echo "$out"
