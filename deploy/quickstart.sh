#!/usr/bin/env bash
# The three-machine quick start of docs/deploy.md, as one script: the doc
# shows this file, and a test (internal/release) runs it on three network
# namespaces, so the two cannot drift.
#
# Machines: db1 and db2 run the service, arbiter is a witness (an etcd vote).
# Set their addresses, have the .deb on every machine, then run this from
# your workstation, where `haven` is installed too:
#   DB1=10.0.0.1 DB2=10.0.0.2 ARB=10.0.0.3 ./quickstart.sh
set -euo pipefail
: "${DB1:?set DB1 to the address of machine db1}" "${DB2:?set DB2}" "${ARB:?set ARB}"
HAVEN="${HAVEN:-haven}"                     # the haven binary on this workstation
ETC="${ETC:-/etc/haven}"                    # where the files go on the machines
DATA="${DATA:-/var/lib/haven}"              # the agents' data
SERVICE="${SERVICE:-/usr/bin/haven sample-service}" # the service to keep available
OUT="${OUT:-cluster}"                       # the files haven init writes, here

# How to reach a machine: ssh and scp as root. (The test runs the same
# commands in network namespaces instead: it sets ON, PUT and START.)
on()    { if [ -n "${ON:-}" ]; then $ON "$@"; else local m=$1; shift; ssh "root@$m" "$@"; fi; }
put()   { if [ -n "${PUT:-}" ]; then $PUT "$@"; else scp "${@:2}" "root@$1:/tmp/"; fi; }
start() { if [ -n "${START:-}" ]; then $START "$@"; else on "$1" systemctl enable --now "$2"; fi; }

# 1. On the workstation: the cluster's config, token, dashboard login, and
#    in $OUT/certs a CA, a certificate for every machine and one for you
#    (the operator). The dashboard password is printed once; note it.
"$HAVEN" init --cluster shop --node "db1=$DB1" --node "db2=$DB2" --witness "arbiter=$ARB" \
  --etc "$ETC" --data-dir "$DATA" --service "$SERVICE" --out "$OUT"

# 2. On every machine: the package (apt install ./haven_*.deb), then the
#    files. The config and token are the same everywhere; NODE.env names
#    the machine's node; a machine gets the CA's certificate and its own
#    certificate and key, nothing else (ca.key and operator.key stay here).
for m in db1:$DB1 db2:$DB2 arbiter:$ARB; do
  node=${m%%:*} addr=${m#*:}
  put "$addr" "$OUT/haven.yaml" "$OUT/token" "$OUT/$node.env" \
    "$OUT/certs/ca.crt" "$OUT/certs/$node.crt" "$OUT/certs/$node.key"
  on "$addr" install -d -m 0750 -g haven "$ETC" "$ETC/certs"
  on "$addr" install -m 0640 -g haven /tmp/haven.yaml /tmp/token "$ETC/"
  on "$addr" install -m 0644 /tmp/ca.crt "/tmp/$node.crt" "$ETC/certs/"
  on "$addr" install -m 0600 -o haven -g haven "/tmp/$node.key" "$ETC/certs/"
  on "$addr" rm -f /tmp/token "/tmp/$node.key"
  on "$addr" install -m 0644 "/tmp/$node.env" /etc/default/haven
done

# 3. Start: the witness and the nodes, in any order. No node becomes active
#    before two of the three etcd members are up.
start "$ARB" haven-witness
start "$DB1" haven
start "$DB2" haven

# 4. Check: `haven status` exits 0 once one node is active and the other is
#    a ready standby (1: degraded, 3: no active node). On a machine the
#    commands speak TLS with ca.crt and send the token; from your own
#    computer they use the operator's certificate (see below).
for _ in $(seq 120); do
  if on "$DB1" haven status --config "$ETC/haven.yaml" >/dev/null; then break; fi
  sleep 1
done
on "$DB1" haven status --config "$ETC/haven.yaml"

# 5. A planned switchover, and the cluster is intact again.
on "$DB1" haven switchover --config "$ETC/haven.yaml" --reason "quick start"
for _ in $(seq 60); do
  if on "$DB1" haven status --config "$ETC/haven.yaml" >/dev/null; then break; fi
  sleep 1
done
on "$DB2" haven status --config "$ETC/haven.yaml"
