#!/bin/bash
# PMD stalls at a million megaflows (issue 13): one PMD forwards a pcap of 1M
# flows under a rule table that makes every source its own megaflow; the
# script reads the PMD's stall counters (iterations over 100 us / 1 ms / 10 ms,
# longest iteration of the last one to two seconds) while the table is steady,
# across a dump-flows of every megaflow, and across an add-rule that
# revalidates them all. `make bench-stalls`; needs ~6 GB of memory, ~2 min.
#
# Usage: benches/pmd-stalls.sh [VSWITCHD] [CORE]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/vswitchd}
CORE=${2:-$(($(nproc) - 1))}
CTL=$ROOT/target/release/vswitchctl
GEN=$ROOT/target/release/vswitch-bench
for b in "$BIN" "$CTL" "$GEN"; do
  [ -x "$b" ] || { echo "missing $b: cargo build --release --workspace" >&2; exit 1; }
done
DIR=$(mktemp -d /tmp/vswitch-stalls.XXXXXX)
PID=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
"$GEN" gen --scenario fwd --flows 1000000 --out "$DIR/fwd1m.pcap" >/dev/null
cat > "$DIR/s.toml" <<EOF
rules = [
  "priority=200,in_port=vf0,ip,nw_src=10.0.0.0/32 actions=drop",
  "priority=10,in_port=vf0,ip actions=output:uplink0",
  "priority=0 actions=drop",
]
[eal]
args = ["--no-huge", "-m", "5194", "--no-pci", "--no-telemetry", "--log-level=lib.eal:warning"]
[datapath]
pmd_cores = [$CORE]
idle_timeout_ms = 60000
max_flows = 2000000
mbufs = 1065536
[control]
socket = "$DIR/ctl.sock"
[metrics]
listen = "off"
[[port]]
name = "vf0"
role = "representor"
devargs = "net_pcap_st0,rx_pcap=$DIR/fwd1m.pcap,infinite_rx=1"
[[port]]
name = "uplink0"
role = "uplink"
devargs = "net_null_st1,no-rx=1"
mtu = 1600
ip = "198.18.0.1/24"
mac = "02:00:00:00:01:01"
EOF
"$BIN" "$DIR/s.toml" --no-stats > "$DIR/vswitchd.log" 2>&1 &
PID=$!
S=$DIR/ctl.sock
show() { "$CTL" --socket "$S" --json show; }
flows=0
for _ in $(seq 1 120); do
  sleep 1
  kill -0 "$PID" 2>/dev/null || { echo "vswitchd exited:" >&2; cat "$DIR/vswitchd.log" >&2; exit 1; }
  flows=$(show 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['flows'])" 2>/dev/null || echo 0)
  [ "$flows" -ge 990000 ] && break
done
[ "$flows" -ge 990000 ] || { echo "only $flows megaflows after 120 s" >&2; exit 1; }
stat() {
  show | python3 -c "
import json,sys
s=json.load(sys.stdin); p=s['pmds'][0]
print('%-14s megaflows %7d  iterations >100us %6d  >1ms %5d  >10ms %3d  longest %6d us' % (sys.argv[1], s['flows'],
      p['iterations_over_100us'], p['iterations_over_1ms'], p['iterations_over_10ms'], p['longest_iteration_us']))" "$1"
}
sleep 3
stat steady
sleep 3
stat steady
t0=$(date +%s.%N)
"$CTL" --socket "$S" dump-flows > /dev/null
t1=$(date +%s.%N)
stat "after dump"
echo "dump-flows of every megaflow: $(python3 -c "print('%.1f' % ($t1 - $t0))") s"
sleep 3
stat steady
t0=$(date +%s.%N)
"$CTL" --socket "$S" add-rule "priority=95,in_port=vf0,tcp,tp_dst=23 actions=drop" > /dev/null
t1=$(date +%s.%N)
stat "after add-rule"
echo "add-rule revalidating every megaflow: $(python3 -c "print('%.2f' % ($t1 - $t0))") s"
