#!/bin/bash
# One benchmark sitting for issue 14 (performance round 2): floors, then the
# server before the round against after it, alternately, on SQLite (and c2c
# on PostgreSQL). Outputs in /tmp/sit14/out/<name>.txt.
#
# Build first, from clean trees:
#   go build -o /tmp/sit14/after/ ./cmd/starlingd ./cmd/starling-bench ./cmd/starling-bench/floors/...
#   git worktree add /tmp/sit14/src-before <before-commit>
#   (cd /tmp/sit14/src-before && go build -o /tmp/sit14/before/ ./cmd/starlingd)
# The bench and floors are always the "after" build (the same load for both).
set -u
S=/tmp/sit14; B=$S/after/starling-bench; OUT=$S/out
mkdir -p "$OUT"
SECRET=0123456789abcdef0123456789abcdef
COMMON="--bcrypt-cost 4 --send-rate 0 --login-rate 0 --register-rate 0 --log-level warn"
PORT=7601
fresh() { psql -h 127.0.0.1 -U postgres -qc "drop database if exists $1" 2>/dev/null; }
# run <build> <db: sqlite|pg> <name> <bench args...>: a fresh server per run.
run() {
  local build=$1 db=$2 name=$3; shift 3
  local dir; dir=$(mktemp -d)
  local extra=""
  if [ "$db" = pg ]; then fresh sit14; extra="--db postgres://postgres@127.0.0.1:5432/sit14 --token-secret $SECRET"; fi
  PORT=$((PORT + 1))
  # shellcheck disable=SC2086
  $S/$build/starlingd --listen 127.0.0.1:$PORT --data-dir "$dir" $extra $COMMON > "$OUT/$name.server.log" 2>&1 &
  local p=$!
  sleep 2
  echo "$(date -u +%T) $name ($build, $db): $*" >> "$OUT/index.txt"
  $B --target 127.0.0.1:$PORT --server-pid $p --quiet "$@" > "$OUT/$name.txt" 2>&1
  echo "  exit $?" >> "$OUT/index.txt"
  kill $p; wait $p 2>/dev/null
  rm -rf "$dir"
}
# prof <name> <bench args...>: the after build with a CPU profile of 8 s taken
# 3 s into the bench's run; `go tool pprof -top` of it in <name>.top.txt.
prof() {
  local name=$1; shift
  local dir; dir=$(mktemp -d)
  PORT=$((PORT + 1))
  # shellcheck disable=SC2086
  $S/after/starlingd --listen 127.0.0.1:$PORT --data-dir "$dir" --metrics-listen 127.0.0.1:9191 --pprof $COMMON > "$OUT/$name.server.log" 2>&1 &
  local p=$!
  sleep 2
  $B --target 127.0.0.1:$PORT --server-pid $p --quiet "$@" > "$OUT/$name.txt" 2>&1 &
  local bp=$!
  sleep 3
  curl -s -o "$OUT/$name.pb" "http://127.0.0.1:9191/debug/pprof/profile?seconds=8"
  wait $bp
  kill $p; wait $p 2>/dev/null
  rm -rf "$dir"
  go tool pprof -top "$OUT/$name.pb" > "$OUT/$name.top.txt" 2>&1
}
floor() { # name, relayfloor load args...
  local name=$1; shift
  $S/after/relayfloor -serve 127.0.0.1:39101 -small > /dev/null 2>&1 & local rf=$!
  sleep 1
  $S/after/relayfloor -target 127.0.0.1:39101 -server-pid $rf "$@" > "$OUT/$name.txt" 2>&1
  kill $rf; wait $rf 2>/dev/null
}
{ date -u; uptime; nproc; grep -m1 'model name' /proc/cpuinfo; } > "$OUT/machine.txt"

# Floors: the bare relay at the same loads (server CPU per delivery / connect).
floor floor-c2c-1000       -pairs 100 -rate 10 -window 64 -d 10s
floor floor-c2c-max        -pairs 100 -window 16 -d 8s
floor floor-grp1000-10     -group 1000 -rate 10 -ack -window 16 -d 10s
floor floor-grp5000-10     -group 5000 -rate 10 -ack -window 16 -d 10s
floor floor-grp1000-max    -group 1000 -ack -window 16 -d 8s
floor floor-idle-5000      -idle 5000
$S/after/dbfloor -sqlite "$S/floor.db" -batch 1 > "$OUT/floor-sqlite-1.txt" 2>&1; rm -f "$S"/floor.db*

for r in a b; do
  run before sqlite c2c1000-before-$r --scenario c2c --pairs 100 --rate 10 --inflight 64 --duration 10s
  run after  sqlite c2c1000-after-$r  --scenario c2c --pairs 100 --rate 10 --inflight 64 --duration 10s
done
run before pg c2c1000-pg-before --scenario c2c --pairs 100 --rate 10 --inflight 64 --duration 10s
run after  pg c2c1000-pg-after  --scenario c2c --pairs 100 --rate 10 --inflight 64 --duration 10s
run before sqlite c2c5000-before --scenario c2c --pairs 100 --rate 50 --inflight 64 --duration 10s
run after  sqlite c2c5000-after  --scenario c2c --pairs 100 --rate 50 --inflight 64 --duration 10s
run before sqlite c2cmax-before --scenario c2c --pairs 100 --duration 10s
run after  sqlite c2cmax-after  --scenario c2c --pairs 100 --duration 10s
for r in a b; do
  run before sqlite grp1000-10-before-$r --scenario group --members 1000 --senders 1 --rate 10 --duration 10s
  run after  sqlite grp1000-10-after-$r  --scenario group --members 1000 --senders 1 --rate 10 --duration 10s
done
run after  sqlite grp500-10-after  --scenario group --members 500 --senders 1 --rate 10 --duration 10s
run before sqlite grp5000-10-before --scenario group --members 5000 --senders 1 --rate 10 --duration 10s --timeout 60s
run after  sqlite grp5000-10-after  --scenario group --members 5000 --senders 1 --rate 10 --duration 10s --timeout 60s
run before sqlite grp1000max-before --scenario group --members 1000 --senders 1 --inflight 16 --duration 10s
run after  sqlite grp1000max-after  --scenario group --members 1000 --senders 1 --inflight 16 --duration 10s
run after  sqlite grp10000max-after --scenario group --members 10000 --senders 1 --inflight 16 --duration 10s --timeout 60s
run before sqlite idle19000-before --scenario idle --conns 19000 --duration 10s --timeout 20s
run after  sqlite idle19000-after  --scenario idle --conns 19000 --duration 10s --timeout 20s
prof prof-c2c1000 --scenario c2c --pairs 100 --rate 10 --inflight 64 --duration 12s
prof prof-grp1000-10 --scenario group --members 1000 --senders 1 --rate 10 --duration 12s
prof prof-idle --scenario idle --conns 19000 --duration 5s --timeout 20s
echo done >> "$OUT/index.txt"
