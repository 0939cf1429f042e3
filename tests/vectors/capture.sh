#!/usr/bin/env bash
# Regenerates the keepalived capture vectors in this directory (run as root).
# One throw-away network namespace per scenario with a veth pair d0/d1 (dummy links are not available here)
# (fixed MAC 02:00:00:00:00:01 => link-local fe80::ff:fe00:1, 192.0.2.1/24,
# 2001:db8::1/64); keepalived (the system one, 2.2.7 here) runs inside it with
# a generated config; tcpdump captures 3 adverts plus keepalived's own GARP /
# unsolicited NA. Only processes started here are killed (by PID); the
# namespaces are deleted on exit, also on failure.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/capv.XXXXXX)
TAG=capv$$
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

# $1 scenario name, $2 vrrp_instance body, $3 extra tcpdump filter for announcements
scenario() {
    local name=$1 body=$2 afilter=$3
    local ns=$TAG-$name
    NSES+=("$ns")
    ip netns add "$ns"
    ip -n "$ns" link add d0 type veth peer name d1
    ip -n "$ns" link set d1 up
    ip -n "$ns" link set d0 address 02:00:00:00:00:01 multicast on up
    ip -n "$ns" addr add 192.0.2.1/24 dev d0
    ip -n "$ns" addr add 2001:db8::1/64 dev d0 nodad
    ip -n "$ns" link set lo up
    for _ in $(seq 1 50); do
        ip -n "$ns" -6 addr show dev d0 scope link | grep -q 'fe80::ff:fe00:1' \
            && ! ip -n "$ns" -6 addr show dev d0 | grep -q tentative && break
        sleep 0.1
    done
    cat >"$WORK/$name.conf" <<CONF
global_defs {
    router_id $ns
    vrrp_garp_master_repeat 1
    vrrp_garp_master_delay 0
}
vrrp_instance VI_1 {
    interface d0
    virtual_router_id 51
    priority 100
    advert_int 1
    state MASTER
$body
}
CONF
    ip netns exec "$ns" tcpdump -n -U -i d0 -w "$WORK/$name.vrrp.pcap" -c 3 'ip proto 112 or ip6 proto 112' \
        2>"$WORK/$name.td1.err" &
    local td1=$!; PIDS+=("$td1")
    ip netns exec "$ns" tcpdump -n -U -i d0 -w "$WORK/$name.ann.pcap" -c 1 "$afilter" \
        2>"$WORK/$name.td2.err" &
    local td2=$!; PIDS+=("$td2")
    wait_listening "$WORK/$name.td1.err"
    wait_listening "$WORK/$name.td2.err"
    ip netns exec "$ns" /usr/sbin/keepalived -n -l -D --vrrp -i "$ns" -f "$WORK/$name.conf" \
        -p "$WORK/$name.pid" -r "$WORK/$name.vrrp.pid" >"$WORK/$name.ka.log" 2>&1 &
    local ka=$!; PIDS+=("$ka")
    # Bounded wait (20 s) for both captures to reach their packet count.
    for _ in $(seq 1 200); do
        if ! kill -0 "$td1" 2>/dev/null && ! kill -0 "$td2" 2>/dev/null; then break; fi
        sleep 0.1
    done
    kill "$ka" 2>/dev/null || true; wait "$ka" 2>/dev/null || true
    kill "$td1" "$td2" 2>/dev/null || true
    wait "$td1" 2>/dev/null || true; wait "$td2" 2>/dev/null || true
    python3 "$HERE/pcap2hex.py" "$WORK/$name.vrrp.pcap" "$HERE/keepalived-$name.hex" \
        "keepalived $(keepalived --version 2>&1 | head -1 | cut -d" " -f2), scenario $name, captured by tests/vectors/capture.sh: IP packets (Ethernet header stripped)" strip
    python3 "$HERE/pcap2hex.py" "$WORK/$name.ann.pcap" "$HERE/keepalived-$name-announce.hex" \
        "keepalived announcement frame, scenario $name, captured by tests/vectors/capture.sh: full Ethernet frame" keep || true
    ip netns del "$ns"
}

scenario v2-noauth "    version 2
    virtual_ipaddress {
        192.0.2.100/24
        192.0.2.101/24
    }" "arp"
scenario v2-pass "    version 2
    authentication {
        auth_type PASS
        auth_pass secret
    }
    virtual_ipaddress {
        192.0.2.100/24
    }" "arp"
scenario v3-ipv4 "    version 3
    virtual_ipaddress {
        192.0.2.100/24
        192.0.2.101/24
    }" "arp"
scenario v3-ipv6 "    version 3
    virtual_ipaddress {
        2001:db8::100/64
        fe80::100/64
    }" "icmp6 and ip6[40] == 136"
# Link-local VIP configured first: does keepalived reorder the list?
scenario v3-ipv6-llfirst "    version 3
    virtual_ipaddress {
        fe80::100/64
        2001:db8::100/64
    }" "icmp6 and ip6[40] == 136"
echo done
