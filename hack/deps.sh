#!/usr/bin/env bash
# Installs the real programs the tests start, once per machine:
#   - Debian packages: prometheus (2.x receiver and agent-mode sender, and promtool for the alert
#     rules' unit tests), victoria-metrics (vmagent),
#     prometheus-pushgateway, chromium (the web pages' browser tests, driven by playwright-core);
#   - Prometheus 3.x built from its Go module (remote-write 2.0), cached outside the checkout;
#   - Python's prometheus_client from PyPI (the reference Pushgateway client), in a cached venv;
#   - kube-apiserver, etcd, kubectl and helm (hack/kube-assets.sh), built once per machine into the
#     same cache. An already-set KUBEBUILDER_ASSETS (envtest's convention) or CARDINAL_HELM that
#     holds the binaries is used as is.
# Prints `NAME=PATH` lines that test/framework reads (hack/test.mjs exports them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v vmagent >/dev/null || need+=(victoria-metrics)
command -v prometheus-pushgateway >/dev/null || need+=(prometheus-pushgateway)
command -v chromium >/dev/null || need+=(chromium fonts-dejavu-core)
if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "installing Debian packages: ${need[*]}" >&2
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

echo "CARDINAL_PROMETHEUS2=$(command -v prometheus)"
echo "CARDINAL_PROMTOOL=$(command -v promtool)"
echo "CARDINAL_VMAGENT=$(command -v vmagent)"
echo "CARDINAL_PUSHGATEWAY=$(command -v prometheus-pushgateway)"
echo "CARDINAL_CHROMIUM=$(command -v chromium)"
echo "CARDINAL_PROMETHEUS3=$("$here/build-prometheus3.sh")"
echo "$("$here/python-client.sh")"
# KUBEBUILDER_ASSETS=<dir with kube-apiserver, etcd, kubectl> and CARDINAL_HELM=<path>.
"$here/kube-assets.sh"
