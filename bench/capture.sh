#!/usr/bin/env bash
# Capture figures for the release daemon, in two throw-away namespaces:
#   1. random-port UDP noise at trafgen's top rate: daemon CPU (the kernel
#      filter should drop it all), ring drops;
#   2. a flood of first knocks from random spoofed sources to a knock port:
#      daemon CPU, ring drops, frames seen.
# Usage (root): bench/capture.sh [FRAMES]   (default 1,000,000 per run)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
command -v trafgen >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netsniff-ng; }
cargo build --release -q
BIN=$PWD/target/release/tportknockd
id=$$
S=tpkbs$id C=tpkbc$id VS=vbs$id VC=vbc$id
tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  ip netns del "$S" 2>/dev/null || true
  ip netns del "$C" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
ip netns add "$S"; ip netns add "$C"
ip link add "$VS" netns "$S" type veth peer name "$VC" netns "$C"
ip -n "$S" addr add 10.198.0.1/24 dev "$VS"; ip -n "$S" link set "$VS" up; ip -n "$S" link set lo up
ip -n "$C" addr add 10.198.0.2/24 dev "$VC"; ip -n "$C" link set "$VC" up
smac=$(ip netns exec "$S" cat /sys/class/net/$VS/address)
cmac=$(ip netns exec "$C" cat /sys/class/net/$VC/address)
hex() { echo "$1" | sed 's/\([0-9a-f][0-9a-f]\)/0x\1, /g; s/:/ /g'; }
cat > "$tmp/knock.conf" <<CONF
<BENCH>
 sequence = tcp:7000:s udp:7001 tcp:7002:fa
 timeout = 5
 start_command = true
</BENCH>
CONF
chmod 600 "$tmp/knock.conf"
ip netns exec "$S" "$BIN" -c "$tmp/knock.conf" -i "$VS" -p "$tmp/pid" -s "$tmp/state" 2>"$tmp/log" &
pid=$!
for _ in $(seq 50); do grep -q "ready:" "$tmp/log" && break; sleep 0.1; done
cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; }
tck=$(getconf CLK_TCK)
stats() { kill -USR1 "$pid"; sleep 0.3; grep "stats:" "$tmp/log" | tail -1 | sed 's/.*stats: //'; }
run() { # name, trafgen packet body
  echo "{ $(hex "$smac") $(hex "$cmac") 0x08, 0x00, $2 }" > "$tmp/$1.cfg"
  local c0 t0 t1 c1
  c0=$(cpu); t0=$(date +%s.%N)
  ip netns exec "$C" trafgen -i "$tmp/$1.cfg" -o "$VC" -n "$N" -P 1 -q >/dev/null 2>&1
  t1=$(date +%s.%N); sleep 0.5; c1=$(cpu)
  awk -v n="$N" -v a="$t0" -v b="$t1" -v c="$((c1 - c0))" -v k="$tck" -v name="$1" \
    'BEGIN { printf "%-14s %d frames in %.2f s = %.0f frames/s; daemon CPU %.2f s\n", name, n, b-a, n/(b-a), c/k }'
  echo "               daemon: $(stats)"
}
# IPv4 header: csumip over bytes 14..33 of the frame; UDP checksum 0 (none).
udp_noise='0x45, 0x00, const16(32), drnd(2), 0x40, 0x00, 64, 17, csumip(14, 33), 10, 198, 0, 2, 10, 198, 0, 1, const16(40000), drnd(2), const16(12), const16(0), 0x6b, 0x6e, 0x6f, 0x63'
syn_flood='0x45, 0x00, const16(40), drnd(2), 0x40, 0x00, 64, 6, csumip(14, 33), 10, drnd(3), 10, 198, 0, 1, const16(40000), const16(7000), drnd(4), const32(0), 0x50, 0x02, const16(64240), csumtcp(14, 34), const16(0)'
echo "tportknockd capture bench, $(date -u +%F), $(nproc) cores, $N frames per run"
run noise "$udp_noise"
run knock-flood "$syn_flood"
