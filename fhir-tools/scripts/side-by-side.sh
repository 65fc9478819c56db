#!/usr/bin/env bash
# Two servers side by side, both on core 0, each read by its own load generator on core 1
# at the same time: the CPU each server spends per read (from /proc/PID/stat), and the
# difference, round by round. Both see the same machine at the same moment, so the
# difference holds still where two runs one after the other move by a fifth (this VM's
# host takes a varying share of it): a difference of 0.5 µs per read shows in a few
# rounds. For deciding whether a change to the request path or the audit writer helps;
# the throughput the issue's targets name is `audit-cost.sh`'s.
#
# Needs: cargo build --release -p fhir-server -p fhir-tools; taskset (util-linux)
# Usage: fhir-tools/scripts/side-by-side.sh ROUNDS DIR_A DIR_B [AUDIT_A] [AUDIT_B]
#   DIR_A, DIR_B: folders holding a fhir-server binary (the first's fhir-tools loads both);
#   AUDIT_A, AUDIT_B: true (default) or false. Same folder twice with false true: what
#   auditing costs per read.
set -euo pipefail
ROUNDS=${1:?rounds}
A=${2:?folder of server A}
B=${3:?folder of server B}
AUDIT_A=${4:-true}
AUDIT_B=${5:-true}
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
TICK_MICROS=$((1000000 / $(getconf CLK_TCK)))

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

serve() { # folder audit port
  mkdir -p "$DIR/$3"
  taskset -c 0 "$1/fhir-server" serve --database "$DIR/$3/f.db" --listen "127.0.0.1:$3" \
    --auth none --audit "$2" > "$DIR/$3/server.log" 2>&1 &
  echo $!
}

load() { # port
  taskset -c 1 "$A/fhir-tools" bench --url "http://127.0.0.1:$1/fhir" --clients 8 --seconds 8 \
    --phases read --preload 1000 2>/dev/null \
    | awk '$1 == "read" { sub(/.*rate= */, ""); sub(/\/s.*/, ""); print; exit }' > "$DIR/rate.$1"
}

for _ in $(seq "$ROUNDS"); do
  rm -rf "$DIR"/183*
  pa=$(serve "$A" "$AUDIT_A" 18301)
  pb=$(serve "$B" "$AUDIT_B" 18302)
  for port in 18301 18302; do
    for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  done
  ( sleep 3; a=$(ticks "$pa"); b=$(ticks "$pb"); sleep 4
    echo "$(( $(ticks "$pa") - a )) $(( $(ticks "$pb") - b ))" > "$DIR/ticks" ) &
  sampler=$!
  load 18301 & la=$!
  load 18302 & lb=$!
  wait "$la" "$lb" "$sampler"
  kill "$pa" "$pb"; wait "$pa" "$pb" 2>/dev/null || true
  read -r ta tb < "$DIR/ticks"
  awk -v ta="$ta" -v tb="$tb" -v ra="$(cat "$DIR/rate.18301")" -v rb="$(cat "$DIR/rate.18302")" \
    -v tick="$TICK_MICROS" 'BEGIN {
      ca = ta * tick / (ra * 4); cb = tb * tick / (rb * 4)
      printf "A %6d reads/s %5.1f µs/read   B %6d reads/s %5.1f µs/read   B - A %+5.1f µs\n",
        ra, ca, rb, cb, cb - ca }'
done
