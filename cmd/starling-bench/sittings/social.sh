#!/bin/bash
# One benchmark sitting for the social layer and the backend services
# (issues 10 and 11) on a quiet machine: the floors, read receipts on
# against off (--read), a slow event-webhook receiver against none, and the
# Go benchmarks for the inbox and admin token issuance. Outputs in
# /tmp/sitsoc/out/<name>.txt.
#
# Build first, from a clean tree:
#   go build -o /tmp/sitsoc/bin/ ./cmd/starlingd ./cmd/starling-bench ./cmd/starling-bench/floors/...
set -u
S=/tmp/sitsoc; BIN=$S/bin; OUT=$S/out
mkdir -p "$OUT"
SECRET=0123456789abcdef0123456789abcdef
HOOKSECRET=0123456789abcdef
COMMON="--bcrypt-cost 4 --send-rate 0 --login-rate 0 --register-rate 0 --log-level warn"
PORT=7701
fresh() { psql -h 127.0.0.1 -U postgres -qc "drop database if exists $1" 2>/dev/null; }
# run <db: sqlite|pg> <name> <server extra args (one word, comma-free, "" for none)> <bench args...>
run() {
  local db=$1 name=$2 sx=$3; shift 3
  local dir; dir=$(mktemp -d)
  local extra=""
  if [ "$db" = pg ]; then fresh sitsoc; extra="--db postgres://postgres@127.0.0.1:5432/sitsoc --token-secret $SECRET"; fi
  PORT=$((PORT + 1))
  # shellcheck disable=SC2086
  $BIN/starlingd --listen 127.0.0.1:$PORT --data-dir "$dir" $extra $sx $COMMON > "$OUT/$name.server.log" 2>&1 &
  local p=$!
  sleep 2
  echo "$(date -u +%T) $name ($db, server: $sx): $*" >> "$OUT/index.txt"
  $BIN/starling-bench --target 127.0.0.1:$PORT --server-pid $p --quiet "$@" > "$OUT/$name.txt" 2>&1
  echo "  exit $?" >> "$OUT/index.txt"
  kill $p; wait $p 2>/dev/null
  rm -rf "$dir"
}
floor() { # name, relayfloor load args...
  local name=$1; shift
  $BIN/relayfloor -serve 127.0.0.1:39201 -small > /dev/null 2>&1 & local rf=$!
  sleep 1
  $BIN/relayfloor -target 127.0.0.1:39201 -server-pid $rf "$@" > "$OUT/$name.txt" 2>&1
  kill $rf; wait $rf 2>/dev/null
}
{ date -u; uptime; nproc; grep -m1 'model name' /proc/cpuinfo; } > "$OUT/machine.txt"

floor floor-c2c-max     -pairs 100 -window 16 -d 8s
floor floor-c2c-2000    -pairs 100 -rate 20 -window 64 -d 10s
floor floor-grp1000-max -group 1000 -ack -window 16 -d 8s
$BIN/dbfloor -sqlite "$S/floor.db" -batch 1 > "$OUT/floor-sqlite-1.txt" 2>&1; rm -f "$S"/floor.db*

# Read receipts: alternately off and on, a fresh server each.
for r in a b c; do
  run sqlite c2cmax-$r ""            --scenario c2c --pairs 100 --duration 10s
  run sqlite c2cmax-read-$r ""       --scenario c2c --pairs 100 --duration 10s --read
  run sqlite grp1000max-$r ""        --scenario group --members 1000 --senders 1 --inflight 16 --duration 10s
  run sqlite grp1000max-read-$r ""   --scenario group --members 1000 --senders 1 --inflight 16 --duration 10s --read
done
for r in a b; do
  run pg c2cmax-pg-$r ""             --scenario c2c --pairs 100 --duration 10s
  run pg c2cmax-pg-read-$r ""        --scenario c2c --pairs 100 --duration 10s --read
  run sqlite c2c2000-$r ""           --scenario c2c --pairs 100 --rate 20 --duration 10s
  run sqlite c2c2000-read-$r ""      --scenario c2c --pairs 100 --rate 20 --duration 10s --read
done

# A slow event-webhook receiver (answers after 1 s; then never) against none:
# every stored message is an event, the harshest load on the webhook queue.
HOOK="--event-webhook=http://127.0.0.1:39290/ --event-webhook-secret=$HOOKSECRET --events=message.stored"
for r in a b; do
  run sqlite c2cmax-nohook-$r ""       --scenario c2c --pairs 100 --duration 10s
  # shellcheck disable=SC2086
  run sqlite c2cmax-slowhook-$r "$HOOK" --scenario c2c --pairs 100 --duration 10s --slow-webhook 127.0.0.1:39290 --slow-webhook-delay 1s
  # shellcheck disable=SC2086
  run sqlite c2cmax-deadhook-$r "$HOOK" --scenario c2c --pairs 100 --duration 10s --slow-webhook 127.0.0.1:39290 --slow-webhook-delay -1s
done

# Go benchmarks: the inbox of 1,000 conversations and admin token issuance.
export STARLING_TEST_REQUIRE_SERVICES=1 STARLING_TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
go test -run '^$' -bench '^BenchmarkInbox$' -benchtime 200x -count 3 ./storage/sqlite/ ./storage/postgres/ > "$OUT/inbox.txt" 2>&1
go test -run '^$' -bench '^BenchmarkAdminIssueToken$' -benchtime 20000x -count 3 ./server/ > "$OUT/issuetoken.txt" 2>&1
echo done >> "$OUT/index.txt"
