#!/bin/bash
# One benchmark sitting: floors, one node, three nodes. Outputs in /tmp/sit/out.
set -u
# Build first: go build -o /tmp/sit/ ./cmd/starlingd ./cmd/starling-bench ./cmd/starling-bench/floors/...
B=/tmp/sit/starling-bench; D=/tmp/sit/starlingd
SECRET=0123456789abcdef0123456789abcdef
COMMON="--bcrypt-cost 4 --send-rate 0 --login-rate 0 --register-rate 0 --log-level warn"
redis-cli --scan --pattern 'sit:*' | xargs -r redis-cli del >/dev/null
fresh() { psql -h 127.0.0.1 -U postgres -qc "drop database if exists $1" 2>/dev/null; }
one() { # name, bench args...
  local name=$1; shift; fresh sit1
  $D --listen 127.0.0.1:7590 --db postgres://postgres@127.0.0.1:5432/sit1 --token-secret $SECRET --node-id solo $COMMON > /tmp/sit/out/$name.server.log 2>&1 & local p=$!
  sleep 2
  $B --target 127.0.0.1:7590 --server-pid $p --quiet "$@" > /tmp/sit/out/$name.txt 2>&1
  kill $p; wait $p 2>/dev/null
}
three() { # name, bench args...
  local name=$1; shift; fresh sit3; redis-cli --scan --pattern 'sit:*' | xargs -r redis-cli del >/dev/null
  local pids=""
  for n in 1 2 3; do
    $D --listen 127.0.0.1:759$n --db postgres://postgres@127.0.0.1:5432/sit3 --redis redis://127.0.0.1:6379/0 --redis-prefix sit: --token-secret $SECRET --node-id n$n $COMMON > /tmp/sit/out/$name.n$n.log 2>&1 &
    pids="$pids${pids:+,}$!"
    [ $n = 1 ] && sleep 1   # the first creates the database
  done
  sleep 2
  $B --target 127.0.0.1:7591,127.0.0.1:7592,127.0.0.1:7593 --server-pid $pids --redis redis://127.0.0.1:6379/0 --quiet "$@" > /tmp/sit/out/$name.txt 2>&1
  kill ${pids//,/ }; wait 2>/dev/null
}
# Floors
/tmp/sit/relayfloor -serve 127.0.0.1:39001 > /dev/null 2>&1 & RF=$!; sleep 1
/tmp/sit/relayfloor -target 127.0.0.1:39001 -pairs 100 -window 16 -d 8s > /tmp/sit/out/floor-relay-c2c.txt 2>&1
/tmp/sit/relayfloor -target 127.0.0.1:39001 -group 1000 -window 16 -d 8s > /tmp/sit/out/floor-relay-group.txt 2>&1
kill $RF; wait $RF 2>/dev/null
fresh sitfloor; psql -h 127.0.0.1 -U postgres -qc "create database sitfloor"
/tmp/sit/dbfloor -pg postgres://postgres@127.0.0.1:5432/sitfloor -batch 10 -workers 8 > /tmp/sit/out/floor-db.txt 2>&1
# c2c: one node, three nodes split (A/B alternating)
one   c2c-1node-a --scenario c2c --pairs 100 --duration 10s
three c2c-3node-a --scenario c2c --pairs 100 --duration 10s
one   c2c-1node-b --scenario c2c --pairs 100 --duration 10s
three c2c-3node-b --scenario c2c --pairs 100 --duration 10s
three c2c-3node-same --scenario c2c --pairs 100 --duration 10s --split=false
# group of 1,000
one   grp-1node-a --scenario group --members 1000 --senders 1 --inflight 16 --duration 10s
three grp-3node-a --scenario group --members 1000 --senders 1 --inflight 16 --duration 10s
one   grp-1node-b --scenario group --members 1000 --senders 1 --inflight 16 --duration 10s
three grp-3node-b --scenario group --members 1000 --senders 1 --inflight 16 --duration 10s
# latency at 1,000 msgs/s: cross-node pairs vs same-node pairs
three lat-cross --scenario c2c --pairs 10 --rate 100 --duration 10s
three lat-same  --scenario c2c --pairs 10 --rate 100 --duration 10s --split=false
one   lat-1node --scenario c2c --pairs 10 --rate 100 --duration 10s
echo done
