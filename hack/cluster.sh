#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for the tests in test/cluster/: the
# control plane, a kubelet running real pods under containerd and runc, kube-proxy and CoreDNS,
# all built from the same sources as the rest of the tests' programs.
#
# Usage:
#   hack/cluster.sh up DIR        start the cluster with its state in DIR (wait until the node is
#                                 Ready and DNS answers), print its KEY=VALUE lines (see env)
#   hack/cluster.sh down DIR      stop it and remove everything `up` made on the machine (DIR is
#                                 kept, with the logs; delete it yourself)
#   hack/cluster.sh env DIR       print KUBECONFIG=DIR/kubeconfig and the other KEY=VALUE lines
#   hack/cluster.sh snapshot DIR  print what of the machine a cluster could change (sysctls,
#                                 routes, network namespaces, mounts, cgroups, processes and
#                                 paths of the cluster's programs); `up` saves one before it
#                                 starts, so a test can compare after `down`
#
# Only KEY=VALUE lines go to stdout; progress (with the time of each phase) goes to stderr.
#
# The node lives in its own network namespace, so nothing it does can reach past this machine:
#   * The namespace (cardinal-<id>) holds only `lo` and the bridge cni0 (10.244.0.1/24); it has
#     no route out, and the host has no route in: the pods' range 10.244.0.0/24 and the Service
#     range 10.96.0.0/24 are `unreachable` routes on the host while the cluster is up, so a host
#     process that tries them gets an error instead of sending them to the default gateway.
#   * Guard rules in the namespace (chain CARDINAL-GUARD): anything forwarded that does not go
#     from the bridge to the bridge is dropped, and so is any packet sent out of an interface
#     other than lo and cni0.
#   * Every daemon (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
#     the kubelet, kube-proxy, CoreDNS) runs in that namespace and binds 10.244.0.1 or the
#     namespace's own loopback. The one socket on the host is a relay (socat) on 127.0.0.1 to the
#     API server, through a Unix socket in DIR: the kubeconfig the tests use points at it.
#   * Pods reach each other, the API server (the `kubernetes` Service has 10.244.0.1:6443 as its
#     endpoint) and CoreDNS (10.244.0.1:53, the pods' nameserver); kube-proxy (iptables mode)
#     serves ClusterIPs. Names outside cluster.local do not resolve.
#
# What is machine-wide, and undone by `down`:
#   * sysctls the kubelet sets (vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
#     kernel.panic_on_oops, kernel.keys.root_maxkeys, kernel.keys.root_maxbytes): saved by `up`
#     in DIR/sysctls.before and written back by `down`;
#   * the two unreachable routes above;
#   * processes: each daemon's PID is in DIR/run/NAME.pid; the containers and shims are found by
#     the network namespace and the cgroups they run in, and killed by PID;
#   * mounts under DIR (overlay root file systems, the pods' volumes, and the pods' network
#     namespaces, which containerd keeps under its state directory: netns_mounts_under_state_dir),
#     unmounted deepest first;
#   * cgroups under /sys/fs/cgroup/*/cardinal-<id> (the kubelet's cgroupRoot), removed;
#   * paths the runtime insists on (/run/containerd for the shims' sockets, /var/lib/cni for
#     libcni's cache, /var/log/containers for the kubelet's log links), removed when `up` found
#     them absent.
# One cluster per machine at a time (the sysctls and routes are machine-wide): `up` refuses when
# another DIR's cluster is up.
#
# Facts of this kind of machine the configuration answers (see DIR/*.yaml, DIR/containerd.toml):
#   * cgroup v1: the kubelet runs with failCgroupV1: false and cgroupDriver: cgroupfs;
#     failSwapOn: false;
#   * containerd without CAP_SYS_RESOURCE and AppArmor: restrict_oom_score_adj, disable_apparmor;
#   * the kubelet's syncFrequency is 10s (the default is 1m) with the Watch strategy, so a
#     ConfigMap change reaches a pod's volume within seconds, as on a cluster that is not idle.
#
# Binaries: the control plane and node binaries from hack/kube-assets.sh --node (built once per
# machine); containerd, runc, the CNI plugins, iptables and socat from Debian (installed by
# hack/cluster-deps.sh). Images: hack/cluster-images.sh builds and loads them.
#
# Environment: CLUSTER_TIMEOUT (seconds to wait for each phase, default 180).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  echo "usage: $0 up|down|env|snapshot DIR" >&2
  exit 2
}
log() { echo "cluster: $*" >&2; }

cmd="${1:-}"
[[ $cmd == up || $cmd == down || $cmd == env || $cmd == snapshot ]] || usage
[[ $# -eq 2 && -n $2 ]] || usage
mkdir -p "$2"
dir="$(cd "$2" && pwd)"
id="$(printf '%s' "$dir" | sha256sum | cut -c1-8)"
netns="cardinal-$id"
cgroot="cardinal-$id"
run="$dir/run"
pki="$dir/pki"
kubeconfig="$dir/kubeconfig"
node_kubeconfig="$dir/kubeconfig.node"
owner=/run/cardinal-cluster.owner
bridge_ip=10.244.0.1
pod_cidr=10.244.0.0/24
service_cidr=10.96.0.0/24
node_name=cardinal-node
timeout="${CLUSTER_TIMEOUT:-180}"
# Sysctls the kubelet sets (its setupKernelTunables).
kubelet_sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Paths the runtime creates whatever it is told.
runtime_paths=(/run/containerd /var/lib/cni /var/log/containers /var/log/pods)
daemons=(coredns kube-proxy kubelet containerd kube-scheduler kube-controller-manager api-relay
  api-relay-ns kube-apiserver etcd)

phase_start=$SECONDS
phase_name=""
# phase NAME: logs how long the previous phase took, and starts timing NAME.
phase() {
  [[ -z $phase_name ]] || log "phase $phase_name: $((SECONDS - phase_start))s"
  phase_name="$1"
  phase_start=$SECONDS
}

emit_env() {
  echo "KUBECONFIG=$kubeconfig"
  echo "CARDINAL_CLUSTER_DIR=$dir"
  echo "CARDINAL_CLUSTER_NETNS=$netns"
  echo "CARDINAL_CONTAINERD_ADDRESS=$run/containerd.sock"
}

# --- processes -----------------------------------------------------------------------------

# alive NAME: whether run/NAME.pid names a live process started for this DIR.
alive() {
  local pid cmdline
  pid="$(cat "$run/$1.pid" 2>/dev/null)" || return 1
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
  # The pid may have been reused: check it still runs on our DIR. Right after `launch` the
  # process is going through its exec chain (nohup, setsid, nsenter), and while the kernel swaps
  # its memory /proc/PID/cmdline reads empty: read it again then.
  local i
  for ((i = 0; i < 20; i++)); do
    cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
    [[ -z $cmdline ]] || break
    sleep 0.05
  done
  [[ $cmdline == *"$dir"* ]]
}

# kill_pid PID: SIGTERM, up to 15 s, then SIGKILL.
kill_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    [[ -d /proc/$pid ]] || return 0
    # A zombie of ours is gone as far as the machine is concerned.
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
    sleep 0.1
  done
  log "pid $pid did not exit after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

halt() {
  if alive "$1"; then
    log "stopping $1 (pid $(cat "$run/$1.pid"))"
    kill_pid "$(cat "$run/$1.pid")"
  fi
  rm -f "$run/$1.pid"
}

# launch NAME NETNS|host PROGRAM ARGS...: starts PROGRAM in the background in the cluster's
# network namespace (or on the host), logging to DIR/NAME.log, its pid in run/NAME.pid.
# nsenter enters only the network namespace: the daemons share the host's mount namespace, so
# the kubelet's volume mounts are what containerd and runc see.
launch() {
  local name="$1" where="$2"
  shift 2
  if [[ $where == netns ]]; then
    nohup setsid nsenter --net="/run/netns/$netns" -- "$@" >"$dir/$name.log" 2>&1 </dev/null &
  else
    nohup setsid "$@" >"$dir/$name.log" 2>&1 </dev/null &
  fi
  echo $! >"$run/$name.pid"
}

# The processes of the cluster that have no pid file: the containers and their shims. They run
# in the cluster's network namespace (shims, CNI plugins) or in its cgroups (containers).
stray_pids() {
  local ns_inode pid cmdline
  ns_inode="$(stat -L -c %i "/run/netns/$netns" 2>/dev/null || true)"
  for pid in /proc/[0-9]*; do
    pid="${pid#/proc/}"
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if [[ -n $ns_inode && "$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null)" == "$ns_inode" ]]; then
      echo "$pid"
    elif grep -q ":/$cgroot/" "/proc/$pid/cgroup" 2>/dev/null || grep -q ":/$cgroot\$" "/proc/$pid/cgroup" 2>/dev/null; then
      echo "$pid"
    else
      # The relay's children, one per connection, name DIR too (and this script does).
      cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || continue
      [[ $cmdline == *"$dir"* && $cmdline != *cluster.sh* ]] && echo "$pid"
    fi
  done
  return 0
}

# --- snapshot ------------------------------------------------------------------------------

snapshot() {
  local name p
  echo "# sysctls"
  for name in "${kubelet_sysctls[@]}"; do echo "$name = $(sysctl -n "$name")"; done
  echo "# routes (host)"
  ip route show table all | grep -E "10\.244\.|10\.96\." || true
  echo "# network namespaces"
  ip netns list 2>/dev/null | grep -F "$netns" || true
  echo "# mounts"
  grep -F -e "$dir" -e "$netns" -e "/run/containerd" -e "/var/lib/kubelet" /proc/self/mountinfo | awk '{print $5}' || true
  echo "# cgroups"
  ls -d /sys/fs/cgroup/*/"$cgroot" 2>/dev/null || true
  echo "# processes"
  local cmdline
  for p in /proc/[0-9]*; do
    cmdline="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
    # This script's own runs name DIR too. The daemons, the shims (-address DIR/run/...) and
    # the relay name it.
    [[ $cmdline == *cluster.sh* ]] && continue
    [[ $cmdline == *"$dir"* ]] && echo "process: $cmdline"
  done
  echo "# paths"
  for p in "${runtime_paths[@]}"; do [[ -e $p ]] && echo "$p exists"; done
  return 0
}

# --- down ----------------------------------------------------------------------------------

down() {
  phase "stop daemons"
  # The kubelet first, so nothing restarts the pods; then the pods, through the runtime, while
  # it still runs.
  halt coredns
  halt kube-proxy
  halt kubelet
  if alive containerd && [[ -x ${node_dir:-}/crictl ]]; then
    "$node_dir/crictl" --runtime-endpoint "unix://$run/containerd.sock" --timeout 30s rmp -fa >/dev/null 2>&1 || true
  fi
  local name
  for name in "${daemons[@]}"; do halt "$name"; done

  phase "stop strays"
  local pids pid i
  for ((i = 0; i < 5; i++)); do
    pids="$(stray_pids)"
    [[ -z $pids ]] && break
    for pid in $pids; do
      log "stopping leftover pid $pid: $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-120)"
      kill_pid "$pid"
    done
  done

  phase "unmount"
  # Deepest first; a mount that will not go is detached lazily.
  local m
  for ((i = 0; i < 3; i++)); do
    mapfile -t mounts < <(awk '{print $5}' /proc/self/mountinfo | grep -F -e "$dir/" -e "/run/netns/$netns" | sort -r | uniq)
    ((${#mounts[@]})) || break
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done

  phase "network"
  if ip netns list 2>/dev/null | grep -qw "$netns"; then ip netns delete "$netns"; fi
  local cidr
  for cidr in "$pod_cidr" "$service_cidr"; do
    if ip route show table main type unreachable | grep -q "^unreachable $cidr"; then
      ip route del unreachable "$cidr" 2>/dev/null || true
    fi
  done

  phase "cgroups"
  local base
  for base in /sys/fs/cgroup/*/"$cgroot"; do
    [[ -d $base ]] || continue
    find "$base" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [[ -d $base ]] && log "could not remove $base (processes left in it?)"
  done

  phase "sysctls and paths"
  if [[ -f $dir/sysctls.before ]]; then
    local key value
    while read -r key _ value; do
      [[ $(sysctl -n "$key") == "$value" ]] || sysctl -q -w "$key=$value" >/dev/null
    done <"$dir/sysctls.before"
    rm -f "$dir/sysctls.before"
  fi
  if [[ -f $dir/absent.before ]]; then
    while read -r p; do [[ -n $p ]] && rm -rf "$p"; done <"$dir/absent.before"
    rm -f "$dir/absent.before"
  fi
  if [[ -f $owner && "$(cat "$owner")" == "$dir" ]]; then rm -f "$owner"; fi
  phase ""
  log "down"
}

case "$cmd" in
  env)
    emit_env
    exit 0
    ;;
  snapshot)
    snapshot
    exit 0
    ;;
esac

[[ $(id -u) -eq 0 ]] || { log "the node needs root (network namespaces, mounts, cgroups)"; exit 1; }
mkdir -p "$run"
node_dir="$("$here/kube-assets.sh" --node | sed -n 's/^CARDINAL_KUBE_NODE_DIR=//p')"

if [[ $cmd == down ]]; then
  down
  exit 0
fi

# --- up ------------------------------------------------------------------------------------

phase "preflight"
fail() {
  log "$1"
  local name
  for name in "${daemons[@]}"; do
    [[ -s $dir/$name.log ]] && { log "--- tail of $dir/$name.log"; tail -n 15 "$dir/$name.log" >&2; }
  done
  down
  exit 1
}
# Reasons a node cannot start here are stated before anything is changed.
if [[ -f $owner && "$(cat "$owner")" != "$dir" ]] && [[ -d "$(cat "$owner")" ]]; then
  log "another cluster is up in $(cat "$owner"): run \`hack/cluster.sh down $(cat "$owner")\` first"
  exit 1
fi
for sub in cpu memory pids; do
  [[ -d /sys/fs/cgroup/$sub || -f /sys/fs/cgroup/cgroup.controllers ]] || {
    log "no $sub cgroup controller under /sys/fs/cgroup: the kubelet cannot run pods here"
    exit 1
  }
done
[[ -f /sys/fs/cgroup/cgroup.controllers ]] && {
  log "cgroup v2 is not configured by this script yet (this kind of machine has v1)"
  exit 1
}
for prog in containerd containerd-shim-runc-v2 runc iptables socat nsenter ip openssl; do
  command -v "$prog" >/dev/null || { log "$prog is missing: run hack/cluster-deps.sh"; exit 1; }
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
  { log "the CNI plugins are missing from /usr/lib/cni: run hack/cluster-deps.sh"; exit 1; }
[[ -n $node_dir && -x $node_dir/kubelet ]] || { log "kube-assets.sh --node gave no kubelet"; exit 1; }
assets="$("$here/kube-assets.sh" | sed -n 's/^KUBEBUILDER_ASSETS=//p')"
for cidr in "$pod_cidr" "$service_cidr"; do
  if ip route show table all | grep -v '^unreachable' | grep -q "${cidr%/*}"; then
    log "the host already routes $cidr; the cluster would shadow it"
    exit 1
  fi
done

# A cluster already up on this DIR: say so.
if alive kubelet && alive kube-apiserver && alive api-relay && [[ -f $kubeconfig ]]; then
  log "already up in $dir"
  emit_env
  exit 0
fi
# Anything half-started here goes first.
down >/dev/null 2>&1 || true
phase "preflight"
echo "$dir" >"$owner"
snapshot >"$dir/machine.before"
: >"$dir/sysctls.before"
for name in "${kubelet_sysctls[@]}"; do echo "$name = $(sysctl -n "$name")" >>"$dir/sysctls.before"; done
: >"$dir/absent.before"
for p in "${runtime_paths[@]}"; do [[ -e $p ]] || echo "$p" >>"$dir/absent.before"; done

phase "network"
ip netns add "$netns"
ns() { ip netns exec "$netns" "$@"; }
ns ip link set lo up
ns ip link add cni0 type bridge
ns ip addr add "$bridge_ip/24" dev cni0
ns ip link set cni0 up
ns sysctl -q -w net.ipv4.ip_forward=1
ns sysctl -q -w net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
ns iptables -N CARDINAL-GUARD
ns iptables -A CARDINAL-GUARD -i cni0 -o cni0 -j RETURN
ns iptables -A CARDINAL-GUARD -j DROP
ns iptables -I FORWARD 1 -j CARDINAL-GUARD
ns iptables -N CARDINAL-GUARD-OUT
ns iptables -A CARDINAL-GUARD-OUT -o lo -j RETURN
ns iptables -A CARDINAL-GUARD-OUT -o cni0 -j RETURN
ns iptables -A CARDINAL-GUARD-OUT -j DROP
ns iptables -I OUTPUT 1 -j CARDINAL-GUARD-OUT
ip route add unreachable "$pod_cidr"
ip route add unreachable "$service_cidr"

phase "certificates"
# shellcheck source=lib/pki.sh
source "$here/lib/pki.sh"
if [[ ! -f $pki/ca.crt ]]; then
  pki_ca cardinal-cluster-ca
  sign admin "/O=system:masters/CN=cardinal-admin" "$PKI_CLIENT_EXT"
  # The node's components authenticate as themselves; they are given system:masters too, since
  # this throwaway cluster runs no Node authorizer.
  sign node "/O=system:masters/CN=system:node:$node_name" "$PKI_CLIENT_EXT"
  sign serving "/CN=kube-apiserver" "$(pki_server_ext "IP:127.0.0.1,IP:$bridge_ip,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")"
  sign kubelet "/CN=$node_name" "$(pki_server_ext "IP:$bridge_ip,DNS:$node_name")"
  sa_keys
fi

b64() { base64 <"$1" | tr -d '\n'; }
# kubeconfig FILE SERVER USER: a kubeconfig for SERVER with the CA and USER's cert embedded.
write_kubeconfig() {
  cat >"$1.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cardinal
  cluster:
    server: $2
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: $3
  user:
    client-certificate-data: $(b64 "$pki/$3.crt")
    client-key-data: $(b64 "$pki/$3.key")
contexts:
- name: cardinal
  context:
    cluster: cardinal
    user: $3
    namespace: default
current-context: cardinal
EOF
  chmod 600 "$1.tmp"
  mv -f "$1.tmp" "$1"
}
write_kubeconfig "$node_kubeconfig" "https://$bridge_ip:6443" node

kubectl_ns() { ns "$assets/kubectl" --kubeconfig "$node_kubeconfig" --request-timeout=10s "$@"; }
# wait_for WHAT DAEMON CMD...: polls CMD until it succeeds, failing if DAEMON exits first.
wait_for() {
  local what="$1" daemon="$2" start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    [[ $daemon == - ]] || alive "$daemon" || fail "$daemon exited while waiting for $what"
    ((SECONDS - start < timeout)) || fail "no $what within ${timeout}s"
    sleep 0.5
  done
}

phase "control plane"
mkdir -p "$dir/etcd"
chmod 700 "$dir/etcd"
launch etcd netns "$assets/etcd" \
  --name=cardinal --data-dir="$dir/etcd" \
  --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
  --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
  --initial-cluster=cardinal=http://127.0.0.1:2380 \
  --listen-metrics-urls=http://127.0.0.1:2381 \
  --unsafe-no-fsync=true --log-level=warn
launch kube-apiserver netns "$assets/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address="$bridge_ip" --advertise-address="$bridge_ip" --secure-port=6443 \
  --cert-dir="$pki" --tls-cert-file="$pki/serving.crt" --tls-private-key-file="$pki/serving.key" \
  --client-ca-file="$pki/ca.crt" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range="$service_cidr" \
  --kubelet-client-certificate="$pki/admin.crt" --kubelet-client-key="$pki/admin.key" \
  --kubelet-certificate-authority="$pki/ca.crt" \
  --kubelet-preferred-address-types=InternalIP \
  --allow-privileged=true --profiling=false
# The relay: 127.0.0.1:PORT on the host -> run/api.sock -> 10.244.0.1:6443 in the namespace.
port=""
for ((i = 0; i < 200; i++)); do
  port=$((20000 + RANDOM % 12000))
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
done
echo "$port" >"$dir/api.port"
rm -f "$run/api.sock"
launch api-relay-ns netns socat "UNIX-LISTEN:$run/api.sock,fork,mode=600" "TCP:$bridge_ip:6443"
launch api-relay host socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$run/api.sock"
write_kubeconfig "$kubeconfig" "https://127.0.0.1:$port" admin
wait_for "API server ready" kube-apiserver kubectl_ns get --raw /readyz
wait_for "API server through the relay" api-relay \
  "$assets/kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz

launch kube-controller-manager netns "$node_dir/kube-controller-manager" \
  --kubeconfig="$node_kubeconfig" --bind-address=127.0.0.1 --leader-elect=false \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --use-service-account-credentials=true \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --service-cluster-ip-range="$service_cidr" --allocate-node-cidrs=false
launch kube-scheduler netns "$node_dir/kube-scheduler" \
  --kubeconfig="$node_kubeconfig" --bind-address=127.0.0.1 --leader-elect=false

phase "containerd"
pause_ref="$("$here/cluster-images.sh" build pause | sed -n 's/^pause=//p')"
[[ -n $pause_ref ]] || fail "could not build the pause image"
mkdir -p "$dir/cni/net.d" "$dir/containerd"
cat >"$dir/cni/net.d/10-cardinal.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cardinal",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{ "subnet": "$pod_cidr", "rangeStart": "10.244.0.10", "gateway": "$bridge_ip" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
cat >"$dir/containerd.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$run/containerd.sock"
[ttrpc]
  address = "$run/containerd-ttrpc.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_ref"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF
launch containerd netns containerd --config "$dir/containerd.toml"
wait_for "containerd" containerd ctr --address "$run/containerd.sock" version

phase "images"
# The pause image must be in containerd before the first pod; the rest is loaded by the tests.
"$here/cluster-images.sh" load "$dir" pause >&2 || fail "could not load the pause image"

phase "kubelet"
for sub in /sys/fs/cgroup/*/; do
  [[ -L ${sub%/} ]] && continue
  mkdir -p "$sub$cgroot"
  # cpuset: a new cgroup has no CPUs or memory nodes until given its parent's.
  if [[ -f $sub/cpuset.cpus ]]; then
    cat "$sub/cpuset.cpus" >"$sub$cgroot/cpuset.cpus"
    cat "$sub/cpuset.mems" >"$sub$cgroot/cpuset.mems"
  fi
done
printf 'nameserver %s\n' "$bridge_ip" >"$dir/resolv.conf"
cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $bridge_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: false }
  x509: { clientCAFile: $pki/ca.crt }
authorization: { mode: AlwaysAllow }
cgroupDriver: cgroupfs
cgroupRoot: /$cgroot
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$run/containerd.sock
clusterDNS: [$bridge_ip]
clusterDomain: cluster.local
resolvConf: $dir/resolv.conf
podLogsDir: $dir/pod-logs
configMapAndSecretChangeDetectionStrategy: Watch
syncFrequency: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1% }
serializeImagePulls: false
protectKernelDefaults: false
enforceNodeAllocatable: [pods]
localStorageCapacityIsolation: true
EOF
launch kubelet netns "$node_dir/kubelet" \
  --config="$dir/kubelet.yaml" --kubeconfig="$node_kubeconfig" --root-dir="$dir/kubelet" \
  --cert-dir="$dir/kubelet/pki" --hostname-override="$node_name" --node-ip="$bridge_ip" -v=1
node_ready() {
  [[ "$(kubectl_ns get node "$node_name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
wait_for "Ready node" kubelet node_ready

phase "kube-proxy and DNS"
cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: $node_kubeconfig }
mode: iptables
clusterCIDR: $pod_cidr
hostnameOverride: $node_name
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$bridge_ip/32]
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
EOF
launch kube-proxy netns "$node_dir/kube-proxy" --config="$dir/kube-proxy.yaml" --v=1
cat >"$dir/Corefile" <<EOF
.:53 {
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $node_kubeconfig cardinal
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
    loadbalance
}
EOF
launch coredns netns "$node_dir/coredns" -conf "$dir/Corefile"
dns_ready() { ns bash -c 'exec 3<>/dev/tcp/127.0.0.1/18181 && printf "GET /ready HTTP/1.0\r\n\r\n" >&3 && grep -q "200 OK" <&3'; }
wait_for "CoreDNS ready" coredns dns_ready
proxy_ready() { ns iptables -t nat -S KUBE-SERVICES | grep -q "default/kubernetes:https"; }
wait_for "kube-proxy rules" kube-proxy proxy_ready
# The default ServiceAccount, which every pod needs, comes from the controller manager.
wait_for "default ServiceAccount" kube-controller-manager kubectl_ns get serviceaccount default
phase ""
log "up in $dir: kubectl --kubeconfig $kubeconfig"
emit_env
