#!/usr/bin/env bash
# Runs a real, local Kubernetes control plane (etcd + kube-apiserver, no nodes) on loopback,
# the way envtest does. This is the shell reference for the TypeScript test framework, which
# starts the same processes with the same flags.
#
# Usage:
#   hack/control-plane.sh start DIR   start etcd and kube-apiserver with their state in DIR,
#                                     wait until /readyz answers ok, print KUBECONFIG=DIR/kubeconfig
#   hack/control-plane.sh env DIR     print KUBECONFIG=DIR/kubeconfig
#   hack/control-plane.sh stop DIR    stop both (SIGTERM, then SIGKILL after 15s); DIR is kept,
#                                     with its logs, so delete it yourself
#
# Only KEY=VALUE lines go to stdout; progress goes to stderr. `start` on a DIR whose control
# plane is already up just prints the env again.
#
# With USE_EXISTING_CLUSTER=true (envtest's switch) nothing is started or stopped, and `env`
# and `start` print the KUBECONFIG already in force (${KUBECONFIG:-$HOME/.kube/config}).
#
# Binaries: kube-apiserver, etcd and kubectl come from KUBEBUILDER_ASSETS, resolved (and built
# once per machine if missing) by hack/kube-assets.sh.
#
# What DIR holds after `start`:
#   ports                  ETCD_PORT=, ETCD_PEER_PORT=, APISERVER_PORT= (free loopback ports)
#   etcd/                  etcd's data dir
#   etcd.pid, etcd.log
#   kube-apiserver.pid, kube-apiserver.log
#   pki/ca.crt, ca.key     a throwaway CA (EC P-256, made with openssl) that signs the two below
#   pki/serving.crt, .key  kube-apiserver's serving cert; SANs 127.0.0.1, ::1, localhost and
#                          the in-cluster names of the kubernetes Service
#   pki/admin.crt, .key    client cert CN=cardinal-admin, O=system:masters (all of RBAC)
#   pki/sa.key, sa.pub     service-account token signing key pair (EC P-256)
#   admin.token, tokens.csv  a static bearer token for the same admin user, for clients that
#                          would rather not use client certificates
#   kubeconfig             cluster https://127.0.0.1:APISERVER_PORT with ca.crt, user with
#                          admin.crt/admin.key, all embedded
#
# etcd flags:
#   --name=cardinal --data-dir=DIR/etcd
#   --listen-client-urls=http://127.0.0.1:ETCD_PORT --advertise-client-urls=http://127.0.0.1:ETCD_PORT
#   --listen-peer-urls=http://127.0.0.1:ETCD_PEER_PORT
#   --initial-advertise-peer-urls=http://127.0.0.1:ETCD_PEER_PORT
#   --initial-cluster=cardinal=http://127.0.0.1:ETCD_PEER_PORT
#   --unsafe-no-fsync=true   (throwaway data: skip fsync, as envtest does)
#   --log-level=warn
#
# kube-apiserver flags:
#   --etcd-servers=http://127.0.0.1:ETCD_PORT
#   --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=APISERVER_PORT
#   --cert-dir=DIR/pki --tls-cert-file=DIR/pki/serving.crt --tls-private-key-file=DIR/pki/serving.key
#   --client-ca-file=DIR/pki/ca.crt --token-auth-file=DIR/tokens.csv
#   --authorization-mode=RBAC
#   --service-account-issuer=https://127.0.0.1:APISERVER_PORT
#   --service-account-key-file=DIR/pki/sa.pub --service-account-signing-key-file=DIR/pki/sa.key
#   --service-cluster-ip-range=10.0.0.0/24   (only allocates virtual IPs; nothing routes there)
#   --endpoint-reconciler-type=none          (the "kubernetes" Service would otherwise get a
#                                             loopback endpoint, which validation rejects)
#   --allow-privileged=true
#   --disable-admission-plugins=ServiceAccount (no controller-manager runs here to create the
#                                             default ServiceAccount that it would wait for)
#   --profiling=false
#
# Environment: KUBEBUILDER_ASSETS, CARDINAL_CACHE_DIR (see kube-assets.sh),
# CONTROL_PLANE_TIMEOUT (seconds to wait for readiness, default 60), USE_EXISTING_CLUSTER.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  echo "usage: $0 start|stop|env DIR" >&2
  exit 2
}
log() { echo "control-plane: $*" >&2; }

cmd="${1:-}"
[[ $cmd == start || $cmd == stop || $cmd == env ]] || usage

if [[ ${USE_EXISTING_CLUSTER:-} == true ]]; then
  case "$cmd" in
    start | env) echo "KUBECONFIG=${KUBECONFIG:-$HOME/.kube/config}" ;;
    stop) ;;
  esac
  exit 0
fi

[[ $# -eq 2 && -n $2 ]] || usage
mkdir -p "$2"
dir="$(cd "$2" && pwd)"
kubeconfig="$dir/kubeconfig"

# alive NAME: whether DIR/NAME.pid names a live NAME process started for this DIR.
alive() {
  local pid
  pid="$(cat "$dir/$1.pid" 2>/dev/null)" || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  # The pid may have been reused: check it is still our binary, running on our DIR.
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ $cmdline == *"/$1 "* && $cmdline == *"$dir"* ]]
}

# halt NAME: SIGTERM, wait up to 15s, then SIGKILL.
halt() {
  local name="$1" pid i
  if alive "$name"; then
    pid="$(cat "$dir/$name.pid")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      alive "$name" || break
      sleep 0.1
    done
    if alive "$name"; then
      log "$name did not exit after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        alive "$name" || break
        sleep 0.1
      done
    fi
  fi
  rm -f "$dir/$name.pid"
}

case "$cmd" in
  env)
    echo "KUBECONFIG=$kubeconfig"
    exit 0
    ;;
  stop)
    halt kube-apiserver
    halt etcd
    exit 0
    ;;
esac

# --- start -------------------------------------------------------------------------------

assets="$("$here/kube-assets.sh" | sed -n 's/^KUBEBUILDER_ASSETS=//p')"
[[ -n $assets ]] || { log "kube-assets.sh gave no KUBEBUILDER_ASSETS"; exit 1; }
kubectl="$assets/kubectl"

ready() {
  "$kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

if alive etcd && alive kube-apiserver && [[ -f $kubeconfig ]] && ready; then
  log "already running in $dir"
  echo "KUBECONFIG=$kubeconfig"
  exit 0
fi
# A half-started or crashed plane: clear it away before starting anew.
halt kube-apiserver
halt etcd

command -v openssl >/dev/null || { log "openssl is needed to make the certificates"; exit 1; }

# Free loopback ports: random ones below the usual ephemeral range (32768+), skipping any that
# accept a connection. Good enough on a test machine; the process fails loudly if it loses a race.
taken=" "
free_port() {
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + RANDOM % 12000))
    [[ $taken == *" $port "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      taken+="$port "
      echo "$port"
      return 0
    fi
  done
  log "found no free port"
  return 1
}
# A restart on the same DIR keeps its ports where they are still free (etcd's data dir
# remembers its peer URL, and an open kubeconfig its server).
ETCD_PORT="" ETCD_PEER_PORT="" APISERVER_PORT=""
if [[ -f $dir/ports ]]; then
  while IFS='=' read -r key value; do
    case "$key" in ETCD_PORT | ETCD_PEER_PORT | APISERVER_PORT) [[ $value =~ ^[0-9]+$ ]] && printf -v "$key" '%s' "$value" ;; esac
  done <"$dir/ports"
fi
# port PREVIOUS: PREVIOUS if it is set and free, else a new free port.
port() {
  if [[ -n $1 && $taken != *" $1 "* ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "$1"
  else
    free_port
  fi
}
etcd_port="$(port "$ETCD_PORT")"
taken+="$etcd_port "
etcd_peer_port="$(port "$ETCD_PEER_PORT")"
taken+="$etcd_peer_port "
api_port="$(port "$APISERVER_PORT")"
printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\n' "$etcd_port" "$etcd_peer_port" "$api_port" >"$dir/ports"

# --- certificates and keys ---
pki="$dir/pki"
# shellcheck source=lib/pki.sh
source "$here/lib/pki.sh"
if [[ ! -f $pki/ca.crt ]]; then
  log "making certificates in $pki"
  pki_ca cardinal-control-plane-ca
  sign admin "/O=system:masters/CN=cardinal-admin" "$PKI_CLIENT_EXT"
  sa_keys
  token="$(openssl rand -hex 24)"
  printf '%s\n' "$token" >"$dir/admin.token"
  # token,user,uid,"group1,group2"
  printf '%s,cardinal-admin,cardinal-admin,"system:masters"\n' "$token" >"$dir/tokens.csv"
  chmod 600 "$dir/admin.token" "$dir/tokens.csv"
fi
# The serving cert is made anew each start: it names no port, but keeps the CA.
sign serving "/CN=kube-apiserver" "$(pki_server_ext "IP:127.0.0.1,IP:::1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")"

# --- kubeconfig ---
b64() { base64 <"$1" | tr -d '\n'; }
cat >"$kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cardinal
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: cardinal-admin
  user:
    client-certificate-data: $(b64 "$pki/admin.crt")
    client-key-data: $(b64 "$pki/admin.key")
contexts:
- name: cardinal
  context:
    cluster: cardinal
    user: cardinal-admin
    namespace: default
current-context: cardinal
EOF
chmod 600 "$kubeconfig.tmp"
mv -f "$kubeconfig.tmp" "$kubeconfig"

# --- processes ---
# launch NAME ARGS...: starts NAME from the assets in the background, detached from this
# shell, logging to DIR/NAME.log, and records its pid in DIR/NAME.pid.
launch() {
  local name="$1" pid
  shift
  nohup "$assets/$name" "$@" >"$dir/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/$name.pid"
  exec_wait "$name" "$pid"
}

# exec_wait NAME PID: returns once PID runs NAME's binary, or has exited. $! names the forked
# shell, which becomes nohup and then NAME only when it execs; until then /proc/PID/cmdline is this
# script's, so alive() would take a process that is merely slow to start (a busy machine) for one
# that died. An exited child stays a zombie (state Z, no exe) until this shell reaps it.
exec_wait() {
  local name="$1" pid="$2" want state i
  want="$(readlink -f "$assets/$name")"
  for ((i = 0; i < timeout * 20; i++)); do
    [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$want" ]] && return 0
    state="$(sed -n 's/^[^)]*) \([A-Z]\).*/\1/p' "/proc/$pid/stat" 2>/dev/null)" || return 0
    [[ -z $state || $state == Z || $state == X ]] && return 0
    sleep 0.05
  done
  fail "$name did not start within ${timeout}s"
}

# fail MESSAGE: report, show the logs' tails, stop what was started.
fail() {
  log "$1"
  local name
  for name in etcd kube-apiserver; do
    [[ -f $dir/$name.log ]] && { log "--- tail of $dir/$name.log"; tail -n 20 "$dir/$name.log" >&2; }
  done
  halt kube-apiserver
  halt etcd
  exit 1
}

timeout="${CONTROL_PLANE_TIMEOUT:-60}"
started=$SECONDS

log "starting etcd on 127.0.0.1:$etcd_port"
mkdir -p "$dir/etcd"
chmod 700 "$dir/etcd"
launch etcd \
  --name=cardinal \
  --data-dir="$dir/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" \
  --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="cardinal=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync=true \
  --log-level=warn
until (exec 3<>"/dev/tcp/127.0.0.1/$etcd_port") 2>/dev/null; do
  alive etcd || fail "etcd exited"
  ((SECONDS - started < timeout)) || fail "etcd did not listen within ${timeout}s"
  sleep 0.2
done

log "starting kube-apiserver on https://127.0.0.1:$api_port"
launch kube-apiserver \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$api_port" \
  --cert-dir="$pki" \
  --tls-cert-file="$pki/serving.crt" \
  --tls-private-key-file="$pki/serving.key" \
  --client-ca-file="$pki/ca.crt" \
  --token-auth-file="$dir/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-issuer="https://127.0.0.1:$api_port" \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --endpoint-reconciler-type=none \
  --allow-privileged=true \
  --disable-admission-plugins=ServiceAccount \
  --profiling=false
until ready; do
  alive kube-apiserver || fail "kube-apiserver exited"
  ((SECONDS - started < timeout)) || fail "kube-apiserver was not ready within ${timeout}s"
  sleep 0.5
done
log "ready in $((SECONDS - started))s: kubectl --kubeconfig $kubeconfig"
echo "KUBECONFIG=$kubeconfig"
