#!/usr/bin/env bash
# A relay of several nodes (docs/protocol.md 11) on loopback: tunnel setup through a
# listener on node 1 for senders at node 1 and at node 2 (interleaved; the goal is a
# cross-node p50 within 1.5x the same-node one), then one bulk transfer each way from
# each node (no byte crosses between nodes, so the two should match), then the same load
# (4 tunnels at once) through one node and with its senders spread over two. Two
# `hyco serve --cluster` processes and a private redis-server, started and stopped by the
# ignored test tests/cluster.rs::bench_cross_node_setup_and_throughput_against_same_node;
# the listener and senders run in the test process. Not part of `cargo test`.
#
#   bash bench/cluster.sh        # release build first (a few minutes), then ~1 minute
#
# Knobs (environment): BENCH_CLUSTER_N (setups per node, 500), BENCH_CLUSTER_BYTES (bytes
# of each bulk transfer, 268435456). Needs /usr/bin/redis-server (Debian's redis-server).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ! -x /usr/bin/redis-server ]]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server
fi
cargo test --release --locked --test cluster -- --ignored --nocapture --exact \
  bench_cross_node_setup_and_throughput_against_same_node 2>&1 | grep '^BENCH' | sed 's/^BENCH //'
