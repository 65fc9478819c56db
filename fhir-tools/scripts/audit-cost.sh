#!/usr/bin/env bash
# What the audit trail costs: read-by-id and create throughput of the same release binary
# with auditing on (the default) and off (`--audit false`, for this measurement only),
# in one run, rounds interleaved (off, on, off, on, ...) so that the noise of a load
# generator sharing the machine falls on both alike. Each round is a fresh server on a
# fresh database; the figure reported per phase is the median of the rounds.
#
# Needs: cargo build --release -p fhir-server -p fhir-tools
# Usage: [PHASES=read] [PRELOAD=1000] fhir-tools/scripts/audit-cost.sh [ROUNDS] [CLIENTS] [SECONDS] [postgres://.../db]
set -euo pipefail
ROUNDS=${1:-3}
CLIENTS=${2:-16}
SECONDS_EACH=${3:-5}
PG=${4:-}
BIN=${BIN:-$(dirname "$0")/../../target/release}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
PORT=18194
B=http://127.0.0.1:$PORT/fhir

database() {
  if [ -n "$PG" ]; then
    local admin=${PG%/*}/postgres name=${PG##*/}
    psql -q "$admin" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" > /dev/null
    echo "$PG"
  else
    rm -f "$DIR"/f.db*
    echo "$DIR/f.db"
  fi
}

round() {
  local audit=$1 phase=$2
  "$BIN/fhir-server" serve --database "$(database)" --listen 127.0.0.1:$PORT --auth none \
    --audit "$audit" > "$DIR/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:$PORT/healthz && break; sleep 0.1; done
  local preload=0
  [ "$phase" = read ] && preload=${PRELOAD:-1000}
  "$BIN/fhir-tools" bench --url $B --clients "$CLIENTS" --seconds "$SECONDS_EACH" \
    --phases "$phase" --preload $preload 2>/dev/null \
    | awk -v phase="$phase" '$1 == phase { sub(/.*rate= */, ""); sub(/\/s.*/, ""); print; exit }'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# The cost of each pair of rounds (an "on" round against the "off" round just before it):
# the machine's speed drifts less within a pair than across the run, so the median of
# the pairs, with its quartiles, says more than the ratio of the two medians.
pairs() {
  paste "$1" "$2" | awk '{ printf "%.1f\n", ($1 - $2) * 100 / $1 }' | sort -n \
    | awk '{ a[NR] = $1; line = line " " $1 } END {
        printf "per pair%s -> median %.1f%% (quartiles %.1f%%, %.1f%%)", line,
          a[int((NR + 1) / 2)], a[int((NR + 3) / 4)], a[int((3 * NR + 1) / 4)] }'
}

for phase in ${PHASES:-read create}; do
  : > "$DIR/off" ; : > "$DIR/on"
  for _ in $(seq "$ROUNDS"); do
    round false "$phase" >> "$DIR/off"
    round true "$phase" >> "$DIR/on"
  done
  off=$(median < "$DIR/off"); on=$(median < "$DIR/on")
  echo "$phase, $CLIENTS clients: audit off $(paste -sd' ' "$DIR/off") -> median $off/s; on $(paste -sd' ' "$DIR/on") -> median $on/s; cost $(awk -v a="$off" -v b="$on" 'BEGIN { printf "%.1f%%", (a - b) * 100 / a }')"
  echo "  $(pairs "$DIR/off" "$DIR/on")"
done
