#!/usr/bin/env bash
# Adds a veth pair with both ends inside the existing network namespace NS:
#
#   tests/janus/veth.sh NS
#
#   tern-srv  198.18.0.1/24   the server under test (Janus / tern bridge)
#   tern-cli  198.18.0.2/24   the load tool's media sockets
#
# 198.18.0.0/15 is the benchmark range; nothing here can reach the host's
# network. Why not just `lo`: Janus never offers a 127.0.0.1 candidate, and
# `ice_enforce_list` needs an interface of its own.
#
# Both ends in one namespace need two tweaks. Janus (libnice) sends out of
# the interface its candidate is on, so its packets to 198.18.0.2 leave
# through tern-srv and need a neighbour entry for 198.18.0.2 there; ARP cannot
# provide one, because tern-cli's ARP reply to a local address is routed over
# `lo`, never back through the pair. Hence permanent neighbour entries both
# ways. And a packet arriving on tern-cli from 198.18.0.1 has a local source
# address, which the kernel drops as a martian unless `accept_local` is set.
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 NS" >&2
  exit 2
fi
ns=$1

ip -n "$ns" link add tern-srv type veth peer name tern-cli
ip -n "$ns" addr add 198.18.0.1/24 dev tern-srv
ip -n "$ns" addr add 198.18.0.2/24 dev tern-cli
ip -n "$ns" link set tern-srv up
ip -n "$ns" link set tern-cli up
mac() { ip netns exec "$ns" cat "/sys/class/net/$1/address"; }
ip -n "$ns" neigh replace 198.18.0.2 lladdr "$(mac tern-cli)" dev tern-srv nud permanent
ip -n "$ns" neigh replace 198.18.0.1 lladdr "$(mac tern-srv)" dev tern-cli nud permanent
ip netns exec "$ns" sysctl -qw \
  net.ipv4.conf.all.accept_local=1 \
  net.ipv4.conf.tern-srv.accept_local=1 \
  net.ipv4.conf.tern-cli.accept_local=1 \
  net.ipv4.conf.all.rp_filter=0 \
  net.ipv4.conf.tern-srv.rp_filter=0 \
  net.ipv4.conf.tern-cli.rp_filter=0
