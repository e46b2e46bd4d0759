#!/bin/sh
# Makes the TLS material of herd's NATS cluster in deploy/nats/tls (or $1):
# a CA, and one certificate for the servers, valid for client connections
# and for the routes between them (mutual TLS). herd's components need only
# ca.crt (HERD_NATS_CA). Keep ca.key off the servers.
#
#   sh deploy/nats/make-tls.sh            # names of docker-compose.yml
#   NATS_HOSTS="nats-0.nats.herd.svc.cluster.local ..." sh deploy/nats/make-tls.sh out/
set -eu
dir=${1:-$(dirname "$0")/tls}
hosts=${NATS_HOSTS:-"nats-1 nats-2 nats-3 nats-0.nats.herd.svc.cluster.local nats-1.nats.herd.svc.cluster.local nats-2.nats.herd.svc.cluster.local localhost"}
mkdir -p "$dir"
umask 077
san=""
for h in $hosts; do san="${san:+$san,}DNS:$h"; done
san="$san,IP:127.0.0.1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
  -subj "/CN=herd NATS CA" -keyout "$dir/ca.key" -out "$dir/ca.crt"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=herd NATS server" -keyout "$dir/server.key" -out "$dir/server.csr"
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 825 -extfile "$dir/server.ext" -out "$dir/server.crt"
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
chmod 644 "$dir/ca.crt" "$dir/server.crt"
echo "wrote $dir/ca.crt, $dir/server.crt and $dir/server.key (and $dir/ca.key: keep it elsewhere)"
