#!/usr/bin/env bash
# Where an audited read's CPU goes: the server pinned to core 0 and the load generator to
# core 1, so that the server's CPU per request is measured alone; per round, the CPU the
# server's threads used during 4 s of the read phase (from /proc/PID/task/*/stat), per
# request, by thread: `tokio-rt-worker` (the request path, building and gathering the
# records included), `sqlite-writer` (appending them), `sqlite-checkpoi` (copying the
# WAL into the database file). Rounds alternate auditing off and on; the medians are
# printed at the end. Throughput ratios on a shared VM move by a fifth from round to
# round; CPU per request moves less, and says which part of the cost to work on.
#
# Needs: cargo build --release -p fhir-server -p fhir-tools; taskset (util-linux)
# Usage: fhir-tools/scripts/audit-cpu.sh [ROUNDS] [CLIENTS]
set -euo pipefail
ROUNDS=${1:-5}
CLIENTS=${2:-16}
BIN=${BIN:-$(dirname "$0")/../../target/release}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
PORT=18195
TICK_MICROS=$((1000000 / $(getconf CLK_TCK)))

# CPU ticks used so far by each thread name of process $1.
ticks() {
  for task in /proc/"$1"/task/*; do
    echo "$(tr ' ' _ < "$task/comm") $(awk '{ print $14 + $15 }' "$task/stat")"
  done | awk '{ t[$1] += $2 } END { for (k in t) print k, t[k] }' | sort
}

round() {
  local audit=$1
  rm -f "$DIR"/f.db*
  taskset -c 0 "$BIN/fhir-server" serve --database "$DIR/f.db" --listen 127.0.0.1:$PORT \
    --auth none --audit "$audit" > "$DIR/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:$PORT/healthz && break; sleep 0.1; done
  ( sleep 3; ticks "$pid" > "$DIR/before"; sleep 4; ticks "$pid" > "$DIR/after" ) &
  local sampler=$!
  local rate
  rate=$(taskset -c 1 "$BIN/fhir-tools" bench --url http://127.0.0.1:$PORT/fhir \
    --clients "$CLIENTS" --seconds 8 --phases read --preload 1000 2>/dev/null \
    | awk '$1 == "read" { sub(/.*rate= */, ""); sub(/\/s.*/, ""); print; exit }')
  wait "$sampler"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  join "$DIR/before" "$DIR/after" | awk -v rate="$rate" -v audit="$audit" -v tick="$TICK_MICROS" '
    { used = ($3 - $2) * tick / (rate * 4); total += used; by[$1] = used }
    END { printf "%s %d %.1f %.1f %.1f %.1f\n", audit, rate, total,
          by["tokio-rt-worker"], by["sqlite-writer"], by["sqlite-checkpoi"] }'
}

: > "$DIR/rounds"
for _ in $(seq "$ROUNDS"); do
  round false | tee -a "$DIR/rounds"
  round true | tee -a "$DIR/rounds"
done | awk '{ printf "audit %-5s %6d reads/s  %6.1f µs/read (request path %.1f, writer %.1f, checkpointer %.1f)\n", $1, $2, $3, $4, $5, $6 }'

for audit in false true; do
  for column in 2 3 4 5 6; do
    awk -v a="$audit" -v c="$column" '$1 == a { print $c }' "$DIR/rounds" | sort -n \
      | awk '{ v[NR] = $1 } END { printf "%s ", v[int((NR + 1) / 2)] }'
  done | awk -v a="$audit" '{ printf "median, audit %-5s %6d reads/s  %6.1f µs/read (request path %.1f, writer %.1f, checkpointer %.1f)\n", a, $1, $2, $3, $4, $5 }'
done
