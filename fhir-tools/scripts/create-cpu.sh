#!/usr/bin/env bash
# CPU per create on PostgreSQL, auditing off and on (rounds interleaved): the server's and
# all PostgreSQL processes' CPU (from /proc) during 4 s of the create phase, divided by the
# creates of those 4 s. Throughput on a shared VM moves by a fifth from round to round;
# CPU per create moves less, and says where an audited create's cost lies.
#
# Needs: cargo build --release -p fhir-server -p fhir-tools; PostgreSQL on this machine
# (its processes are the `postgres` ones). Uses (and grows) the database it is given.
# Usage: fhir-tools/scripts/create-cpu.sh ROUNDS CLIENTS postgres://.../scratch
set -euo pipefail
ROUNDS=${1:-3}
CLIENTS=${2:-16}
PG=${3:?a scratch PostgreSQL database URL}
BIN=${BIN:-$(dirname "$0")/../../target/release}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
PORT=18196
TICK_MICROS=$((1000000 / $(getconf CLK_TCK)))

postgres_ticks() {
  for pid in $(pgrep -x postgres); do awk '{ print $14 + $15 }' "/proc/$pid/stat" 2> /dev/null; done \
    | awk '{ s += $1 } END { print s }'
}
server_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

round() {
  local audit=$1
  "$BIN/fhir-server" serve --database "$PG" --listen 127.0.0.1:$PORT --auth none \
    --audit "$audit" > "$DIR/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:$PORT/healthz && break; sleep 0.1; done
  ( sleep 3; echo "$(server_ticks $pid) $(postgres_ticks)" > "$DIR/before"
    sleep 4; echo "$(server_ticks $pid) $(postgres_ticks)" > "$DIR/after" ) &
  local sampler=$!
  local rate
  rate=$("$BIN/fhir-tools" bench --url http://127.0.0.1:$PORT/fhir --clients "$CLIENTS" \
    --seconds 8 --phases create --preload 0 2>/dev/null \
    | awk '$1 == "create" { sub(/.*rate= */, ""); sub(/\/s.*/, ""); print; exit }')
  wait "$sampler"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  paste "$DIR/before" "$DIR/after" | awk -v rate="$rate" -v tick="$TICK_MICROS" -v audit="$audit" \
    '{ printf "audit %-5s %6d creates/s  server %4.0f µs  PostgreSQL %4.0f µs per create\n",
       audit, rate, ($3 - $1) * tick / (rate * 4), ($4 - $2) * tick / (rate * 4) }'
}

for _ in $(seq "$ROUNDS"); do
  round false
  round true
done
