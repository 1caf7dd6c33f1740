# The certificate helpers hack/cluster.sh and hack/control-plane.sh share. Sourced, not run: the
# caller sets `pki`, the directory the keys and certificates go to (made here, mode 700).
#
#   pki_ca CN               a P-256 CA key and a 1-year self-signed CA certificate, ca.key/ca.crt
#   sign NAME SUBJECT EXT   NAME.key and a 1-year NAME.crt for it signed by that CA, with the
#                           extensions EXT (lines of an openssl extfile)
#   sa_keys                 sa.key and sa.pub, the service-account token signing pair
#   pki_server_ext SANS     the extensions of a serving certificate; PKI_CLIENT_EXT a client one
#
# Every key is EC P-256; openssl's chatter goes nowhere.

PKI_CLIENT_EXT="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"

# pki_server_ext SANS: the extensions of a serving certificate naming SANS (subjectAltName's value).
pki_server_ext() {
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$1"
}

pki_dir() {
  [[ -n ${pki:-} ]] || {
    echo "hack/lib/pki.sh: pki is not set" >&2
    return 1
  }
  mkdir -p "$pki"
  chmod 700 "$pki"
}

eckey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

pki_ca() {
  pki_dir
  eckey "$pki/ca.key"
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=$1" -days 365 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$pki/ca.crt" 2>/dev/null
}

sign() {
  local name="$1" subj="$2" ext="$3"
  pki_dir
  eckey "$pki/$name.key"
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

sa_keys() {
  pki_dir
  eckey "$pki/sa.key"
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}
