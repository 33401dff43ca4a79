#!/usr/bin/env bash
# make demo: a door opened by a knock and closed again, inside two network
# namespaces this script creates and removes. Nothing leaves them, and the
# machine's own firewall is never touched.
#
#   server namespace: tportknockd, an nftables rule set that drops everything
#                     but the sources in a set, and a TCP service on port 22
#                     (nc); the knock puts the knocker into the set for a
#                     while (a kernel door: no command runs)
#   client namespace: tportknock, and nc trying to reach the service
#
# Environment: TPK_BIN_DIR  directory holding tportknockd and tportknock
#                           (default: target/release, built by `make`)
#              TPK_DELAY    seconds the door stays open (default 6)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=${TPK_BIN_DIR:-$here/target/release}
delay=${TPK_DELAY:-6}

if [ "$(id -u)" != 0 ]; then
    echo "make demo needs root: it creates network namespaces and nftables rules." >&2
    echo "Run it as: sudo make demo" >&2
    exit 1
fi
for b in tportknockd tportknock; do
    [ -x "$bin_dir/$b" ] || { echo "no $bin_dir/$b: run 'make' first, then 'sudo make demo'" >&2; exit 1; }
done

# Debian packages the demo drives, installed only when missing.
"$here/scripts/need-debs" iproute2 nftables netcat-openbsd

# Names carry the pid so two demos (or a demo and the tests) never collide.
srv="tpkdemo-srv-$$"
cli="tpkdemo-cli-$$"
srv_ip=10.198.0.1
cli_ip=10.198.0.2
work=$(mktemp -d /tmp/tportknockd-demo.XXXXXX)
pids=()

cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    # Deleting the namespaces removes the veth pair and the rule set with them.
    ip netns del "$srv" 2>/dev/null || true
    ip netns del "$cli" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "interrupted: cleaning up"; exit 130' INT TERM

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
in_srv() { ip netns exec "$srv" "$@"; }
in_cli() { ip netns exec "$cli" "$@"; }

log_seen=0
show_log() {
    # The daemon's lines written since the last call.
    local total
    total=$(wc -l <"$work/daemon.log")
    if [ "$total" -gt "$log_seen" ]; then
        sed -n "$((log_seen + 1)),${total}p" "$work/daemon.log" | sed 's/^/    | /'
        log_seen=$total
    fi
}
try_ssh() {
    # One connection attempt to the service; a dropped SYN times out after 1 s.
    if in_cli nc -z -w 1 "$srv_ip" 22 2>/dev/null; then
        echo "    nc $srv_ip 22: connected"
        return 0
    fi
    echo "    nc $srv_ip 22: no answer (dropped by the firewall)"
    return 1
}

step "two network namespaces joined by a veth pair"
ip netns add "$srv"
ip netns add "$cli"
ip link add tpk0 netns "$srv" type veth peer name tpk1 netns "$cli"
in_srv ip addr add "$srv_ip/24" dev tpk0
in_cli ip addr add "$cli_ip/24" dev tpk1
in_srv ip link set lo up
in_cli ip link set lo up
in_srv ip link set tpk0 up
in_cli ip link set tpk1 up
echo "    $srv ($srv_ip)  <->  $cli ($cli_ip)"

step "server: nftables drops everything but sources in the set 'knocked'"
cat >"$work/rules.nft" <<NFT
table inet demo {
    set knocked { type ipv4_addr; flags timeout; }
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related accept
        iif lo accept
        ip saddr @knocked tcp dport 22 accept
    }
}
NFT
in_srv nft -f "$work/rules.nft"
sed 's/^/    /' "$work/rules.nft"
# Started directly, not through in_srv: a backgrounded function would be a
# subshell, and $! its pid rather than the process to stop.
ip netns exec "$srv" nc -l -k "$srv_ip" 22 </dev/null >/dev/null 2>&1 &
pids+=($!)

step "server: tportknockd with one event (UDP, then TCP frames with exact flags)"
echo "    a kernel door: the knocker joins the set for $delay s, the kernel removes it"
umask 077
cat >"$work/knock.conf" <<CONF
<SSH>
 sequence      = udp:1234 tcp:543:fs tcp:123:frap tcp:2345:n
 timeout       = 10
 nft_set       = inet demo knocked
 command_delay = $delay
</SSH>
CONF
sed 's/^/    /' "$work/knock.conf"
ip netns exec "$srv" "$bin_dir/tportknockd" -c "$work/knock.conf" -i tpk0 -d \
    -p "$work/tportknockd.pid" -s "$work/state" >"$work/daemon.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    grep -q "ready:" "$work/daemon.log" && break
    sleep 0.1
done
grep -q "ready:" "$work/daemon.log" || { show_log; echo "tportknockd did not start" >&2; exit 1; }
show_log

step "client: the service is hidden"
if try_ssh; then echo "the service should be hidden before the knock" >&2; exit 1; fi

step "client: tportknock $srv_ip udp:1234 tcp:543:fs tcp:123:frap tcp:2345:n"
in_cli "$bin_dir/tportknock" "$srv_ip" udp:1234 tcp:543:fs tcp:123:frap tcp:2345:n
opened=0
for _ in $(seq 50); do
    if grep -q "door opened" "$work/daemon.log"; then opened=1; break; fi
    sleep 0.1
done
# The daemon logs the knock first, then the address in the set.
if [ "$opened" = 1 ]; then
    opened=0
    for _ in $(seq 100); do
        case "$(in_srv nft list set inet demo knocked)" in *"$cli_ip"*) opened=1; break ;; esac
        sleep 0.1
    done
fi
show_log
[ "$opened" = 1 ] || { echo "the door did not open" >&2; exit 1; }
in_srv nft list set inet demo knocked | grep elements | sed 's/^[[:space:]]*/    set: /'

step "client: the service answers the knocker"
try_ssh || { echo "the knock should have opened the door" >&2; exit 1; }

step "waiting for the door to close (command_delay = $delay s)"
closed=0
for _ in $(seq $((delay * 10 + 100))); do
    set_now=$(in_srv nft list set inet demo knocked)
    case "$set_now" in *"$cli_ip"*) ;; *) closed=1; break ;; esac
    sleep 0.1
done
# The kernel removed it; the daemon notes the door closed at the same time.
for _ in $(seq 20); do
    grep -q "door closed" "$work/daemon.log" && break
    sleep 0.1
done
show_log
[ "$closed" = 1 ] || { echo "the door did not close" >&2; exit 1; }

step "client: the service is hidden again"
if try_ssh; then echo "the door should be closed" >&2; exit 1; fi

step "done: removing the namespaces, the rules and the daemon"
echo
