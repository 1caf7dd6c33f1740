#!/usr/bin/env bash
# Installs the real programs the tests start, once per machine:
#   - Debian packages: prometheus (2.x receiver and agent-mode sender, and promtool for the alert
#     rules' unit tests), victoria-metrics (vmagent),
#     prometheus-pushgateway, chromium (the web pages' browser tests, driven by playwright-core),
#     redis-server (single server and Redis Cluster, with redis-cli), haproxy (the load balancer in
#     front of several proxy replicas);
#   - Prometheus 3.x built from its Go module (remote-write 2.0), cached outside the checkout;
#   - Python's prometheus_client from PyPI (the reference Pushgateway client), in a cached venv;
#   - kube-apiserver, etcd, kubectl and helm (hack/kube-assets.sh), built once per machine into the
#     same cache. An already-set KUBEBUILDER_ASSETS (envtest's convention) or CARDINAL_HELM that
#     holds the binaries is used as is;
#   - for the cluster tests (hack/cluster.sh): the node's binaries (kubelet, kube-proxy,
#     kube-controller-manager, kube-scheduler, crictl, CoreDNS; kube-assets.sh --node) and, from
#     Debian, containerd, runc, the CNI plugins, iptables, socat, buildah and mmdebstrap.
# Prints `NAME=PATH` lines that test/framework reads (hack/test.mjs exports them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v vmagent >/dev/null || need+=(victoria-metrics)
command -v prometheus-pushgateway >/dev/null || need+=(prometheus-pushgateway)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
for prog in containerd runc iptables socat buildah mmdebstrap; do
  command -v "$prog" >/dev/null || need+=("$prog")
done
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
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
echo "CARDINAL_REDIS=$(command -v redis-server)"
echo "CARDINAL_REDIS_CLI=$(command -v redis-cli)"
echo "CARDINAL_HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)"
echo "CARDINAL_CHROMIUM=$(command -v chromium)"
echo "CARDINAL_PROMETHEUS3=$("$here/build-prometheus3.sh")"
# prometheus-operator, its config reloader, CRDs and RBAC examples, for test/cluster/.
echo "CARDINAL_PROMETHEUS_OPERATOR=$("$here/build-prometheus-operator.sh")"
echo "$("$here/python-client.sh")"
# KUBEBUILDER_ASSETS=<dir with kube-apiserver, etcd, kubectl> and CARDINAL_HELM=<path>.
# and CARDINAL_KUBE_NODE_DIR=<dir with the node's binaries>.
"$here/kube-assets.sh" --node
