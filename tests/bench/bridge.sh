# Sourced by the bench scripts here: one bridge shard on loopback as every
# bridge benchmark runs it (the sweep's secret, no per-address cap on
# signalling connections: every load-tool participant comes from
# 127.0.0.1, and 1,000 by default refused the 1,001st).
#
#   start_bridge CORE BIN LOG   # starts BIN pinned to CORE; its pid in $BR
start_bridge() {
  TERN_AUTH_SECRET=sweep TERN_LOG=warn TERN_BRIDGE_SHARDS=1 TERN_BRIDGE_MAX_SIGNAL_CONNECTIONS_PER_IP=0 \
    TERN_BRIDGE_HTTP_LISTEN='"127.0.0.1:18081"' TERN_BRIDGE_MEDIA_LISTEN='"127.0.0.1:18001"' \
    taskset -c "$1" "$2" bridge >"$3" 2>&1 &
  BR=$!
  sleep 0.5
}
