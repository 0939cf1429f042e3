#!/usr/bin/env bash
# Regenerates the FRR vrrpd capture vectors (frr-*.hex) in this directory (run as root; not run in CI).
# Needs the Debian `frr` package (zebra + vrrpd in /usr/lib/frr) and tcpdump. One throw-away network
# namespace per scenario with a veth pair d0/d1 (fixed MAC 02:00:00:00:00:01 => fe80::ff:fe00:1,
# 192.0.2.1/24, 2001:db8::1/64). FRR's vrrpd sends from macvlan interfaces carrying the virtual MAC
# (00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID for IPv6) on top of d0, created here beforehand
# with the VIP on them and, for IPv6, a fixed link-local address (addrgenmode none) so the capture is
# reproducible. zebra and vrrpd run inside the namespace with their sockets in a private directory;
# tcpdump on d0 captures 4 adverts per address family, the first 3 of each are kept. Only processes
# started here are killed (by PID); the namespaces are deleted on exit, also on failure. Fields that differ between runs: the
# IPv4 id (FRR sets DF and a varying id) and the IPv6 flow label; the VRRP messages are identical.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/capfrr.XXXXXX)
chmod 755 "$WORK"
TAG=vfrr$$
FRR=/usr/lib/frr
NSES=()
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
    for n in "${NSES[@]:-}"; do [ -n "$n" ] && ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_listening() { # $1 = stderr file of tcpdump
    for _ in $(seq 1 100); do grep -q "listening on" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "tcpdump did not start" >&2; return 1
}

wait_file() { # $1 = path that a daemon creates
    for _ in $(seq 1 100); do [ -e "$1" ] && return 0; sleep 0.1; done
    echo "$1 did not appear" >&2; return 1
}

# $1 scenario name, $2 vrrpd interface body, $3 "4" / "6" / "46": macvlans to create
scenario() {
    local name=$1 body=$2 fams=$3
    local ns=$TAG-$name
    local run=$WORK/$name
    NSES+=("$ns")
    mkdir -p "$run"; chown frr:frr "$run"
    ip netns add "$ns"
    ip -n "$ns" link add d0 type veth peer name d1
    ip -n "$ns" link set d1 up
    ip -n "$ns" link set d0 address 02:00:00:00:00:01 multicast on up
    ip -n "$ns" addr add 192.0.2.1/24 dev d0
    ip -n "$ns" addr add 2001:db8::1/64 dev d0 nodad
    ip -n "$ns" link set lo up
    if [[ $fams == *4* ]]; then
        ip -n "$ns" link add vrrp4-51 link d0 type macvlan mode bridge
        ip -n "$ns" link set vrrp4-51 addrgenmode none
        ip -n "$ns" link set vrrp4-51 address 00:00:5e:00:01:33
        ip -n "$ns" addr add 192.0.2.100/24 dev vrrp4-51
        ip -n "$ns" link set vrrp4-51 up
    fi
    if [[ $fams == *6* ]]; then
        ip -n "$ns" link add vrrp6-51 link d0 type macvlan mode bridge
        ip -n "$ns" link set vrrp6-51 addrgenmode none
        ip -n "$ns" link set vrrp6-51 address 00:00:5e:00:02:33
        ip -n "$ns" addr add fe80::200:5eff:fe00:233/64 dev vrrp6-51 nodad
        ip -n "$ns" addr add 2001:db8::100/64 dev vrrp6-51 nodad
        ip -n "$ns" link set vrrp6-51 up
    fi
    for _ in $(seq 1 50); do
        ip -n "$ns" -6 addr show dev d0 scope link | grep -q 'fe80::ff:fe00:1' \
            && ! ip -n "$ns" -6 addr show | grep -q tentative && break
        sleep 0.1
    done
    cat >"$run/zebra.conf" <<CONF
hostname $ns
CONF
    cat >"$run/vrrpd.conf" <<CONF
hostname $ns
interface d0
$body
CONF
    chown frr:frr "$run"/*.conf
    ip netns exec "$ns" tcpdump -n -U -i d0 -w "$WORK/$name.pcap" -c "$((4 * ${#fams}))" \
        'ip proto 112 or ip6 proto 112' 2>"$WORK/$name.td.err" &
    local td=$!; PIDS+=("$td")
    wait_listening "$WORK/$name.td.err"
    ip netns exec "$ns" "$FRR/zebra" -f "$run/zebra.conf" -i "$run/zebra.pid" -z "$run/zserv.api" \
        --vty_socket "$run" -P 0 --log "file:$run/zebra.log" >"$run/zebra.out" 2>&1 &
    local zb=$!; PIDS+=("$zb")
    wait_file "$run/zserv.api"
    ip netns exec "$ns" "$FRR/vrrpd" -f "$run/vrrpd.conf" -i "$run/vrrpd.pid" -z "$run/zserv.api" \
        --vty_socket "$run" -P 0 --log "file:$run/vrrpd.log" >"$run/vrrpd.out" 2>&1 &
    local vd=$!; PIDS+=("$vd")
    # Bounded wait (20 s) for the capture to reach its packet count.
    for _ in $(seq 1 200); do
        kill -0 "$td" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$td" 2>/dev/null; then
        echo "$name: capture incomplete; vrrpd log:" >&2
        cat "$run/vrrpd.log" "$run/vrrpd.out" >&2 || true
    fi
    kill "$vd" "$zb" 2>/dev/null || true
    wait "$vd" 2>/dev/null || true; wait "$zb" 2>/dev/null || true
    kill "$td" 2>/dev/null || true; wait "$td" 2>/dev/null || true
    local ver
    ver=$("$FRR/vrrpd" --version 2>&1 | head -1 | cut -d" " -f3)
    python3 "$HERE/pcap2hex.py" "$WORK/$name.pcap" "$WORK/$name.hex" \
        "FRR vrrpd $ver, scenario $name, captured by tests/vectors/capture-frr.sh: IP packets (Ethernet header stripped)" strip
    # One file per IP version (IPv4 packets start with nibble 4, IPv6 with 6).
    local i f
    for ((i = 0; i < ${#fams}; i++)); do
        f=${fams:i:1}
        { head -1 "$WORK/$name.hex"; grep "^$f" "$WORK/$name.hex" | head -3; } >"$HERE/frr-$name-ipv$f.hex"
        echo "frr-$name-ipv$f.hex: $(grep -c "^$f" "$HERE/frr-$name-ipv$f.hex") packets"
    done
    ip netns del "$ns"
}

scenario v3 " vrrp 51 version 3
 vrrp 51 priority 100
 vrrp 51 advertisement-interval 1000
 vrrp 51 ip 192.0.2.100
 vrrp 51 ipv6 2001:db8::100" 46
scenario v2 " vrrp 51 version 2
 vrrp 51 priority 100
 vrrp 51 advertisement-interval 1000
 vrrp 51 ip 192.0.2.100" 4
echo done
