#!/usr/bin/env bash
# Builds prometheus-operator (its cmd/operator) and its prometheus-config-reloader from the Go
# module github.com/prometheus-operator/prometheus-operator, and keeps, beside the binaries, the
# module's own CRDs (example/prometheus-operator-crd) and RBAC examples (example/rbac) that
# test/cluster/ applies. Cached outside the checkout: built once per machine. Prints the directory.
#
# The module's go.mod replaces its nested modules (pkg/apis/monitoring, pkg/client) with local
# directories, which the module's zip does not hold, so the build runs inside a throwaway main
# module that requires all three at the same version.
set -euo pipefail
version="${PROMETHEUS_OPERATOR_VERSION:-0.85.0}"
module=github.com/prometheus-operator/prometheus-operator
out="${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}/prometheus-operator-$version"
if [[ -x $out/operator && -x $out/prometheus-config-reloader && -d $out/crds ]]; then
  echo "$out"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work" "$out.tmp"' EXIT
cd "$work"
printf 'module cardinal.dev/build/prometheus-operator\n\ngo 1.24.0\n' >go.mod
export GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
go get "$module@v$version" "$module/pkg/apis/monitoring@v$version" "$module/pkg/client@v$version" >&2
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
CGO_ENABLED=0 nice go build -trimpath -ldflags '-s -w' -o "$out.tmp/" \
  "$module/cmd/operator" "$module/cmd/prometheus-config-reloader" >&2
src="$(go list -m -f '{{.Dir}}' "$module")"
cp -r "$src/example/prometheus-operator-crd" "$out.tmp/crds"
cp -r "$src/example/rbac" "$out.tmp/rbac"
chmod -R u+w "$out.tmp"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
