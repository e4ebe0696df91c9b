#!/usr/bin/env bash
# Writes a minimal Janus 1.1 configuration into DIR for a Janus that runs
# inside a private network namespace:
#
#   tests/janus/janus-config.sh DIR INTERFACE IP [RTP_PORT_RANGE]
#
# - only the HTTP transport (bound to IP:8088, API at /janus, no admin API)
#   and the VideoRoom plugin are loaded: DIR/plugins and DIR/transports hold
#   symlinks to just those two modules, so nothing else in the package can
#   load, whatever it ships;
# - ICE gathers on INTERFACE only (`ice_enforce_list`): Janus never offers a
#   127.0.0.1 candidate, and must not offer any address outside the namespace;
# - RTP ports from RTP_PORT_RANGE (default 20000-20999), no event handlers,
#   no loggers, warnings only (logging costs CPU in the comparison).
#
# Start it with: janus -C DIR/janus.jcfg -F DIR
# Used by tests/janus/compare.sh and tests/janus.rs.
set -euo pipefail

if (($# < 3)); then
  echo "usage: $0 DIR INTERFACE IP [RTP_PORT_RANGE]" >&2
  exit 2
fi
dir=$1 iface=$2 ip=$3 ports=${4:-20000-20999}

if [[ ! -d /etc/janus ]]; then
  echo "janus-config: /etc/janus is missing: install Janus (apt-get install -y janus)" >&2
  exit 1
fi
videoroom=$(find /usr/lib -name libjanus_videoroom.so 2>/dev/null | head -n1)
http=$(find /usr/lib -name libjanus_http.so 2>/dev/null | head -n1)
if [[ -z $videoroom || -z $http ]]; then
  echo "janus-config: libjanus_videoroom.so / libjanus_http.so not found under /usr/lib" >&2
  exit 1
fi

mkdir -p "$dir/plugins" "$dir/transports" "$dir/none"
# The package's files as the starting point (plugin configs Janus may look
# for); the three that matter are rewritten below.
cp /etc/janus/*.jcfg "$dir/"
ln -sf "$videoroom" "$dir/plugins/"
# AudioBridge too, for tests/janus/mix_compare.sh (Debian builds it).
audiobridge=$(find /usr/lib -name libjanus_audiobridge.so 2>/dev/null | head -n1)
if [[ -n $audiobridge ]]; then
  ln -sf "$audiobridge" "$dir/plugins/"
fi
ln -sf "$http" "$dir/transports/"

cat >"$dir/janus.jcfg" <<EOF
general: {
	configs_folder = "$dir"
	plugins_folder = "$dir/plugins"
	transports_folder = "$dir/transports"
	events_folder = "$dir/none"
	loggers_folder = "$dir/none"
	# The address in the SDP's c= lines (Janus's own guess skips the veth).
	interface = "$ip"
	debug_level = 3
	debug_timestamps = true
	# Sessions die after 60 s without a request (the load tool keeps alive).
	session_timeout = 60
	server_name = "tern-compare"
}
certificates: {
}
media: {
	rtp_port_range = "$ports"
}
nat: {
	nice_debug = false
	ice_enforce_list = "$iface"
	ignore_mdns = true
}
plugins: {
}
transports: {
}
loggers: {
}
events: {
}
EOF

cat >"$dir/janus.transport.http.jcfg" <<EOF
general: {
	json = "compact"
	base_path = "/janus"
	http = true
	port = 8088
	ip = "$ip"
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
cors: {
}
certificates: {
}
EOF

# No static rooms: the load tool creates (and destroys) its own.
cat >"$dir/janus.plugin.videoroom.jcfg" <<EOF
general: {
}
EOF

# No static AudioBridge rooms either (mix_load.py creates its own).
cat >"$dir/janus.plugin.audiobridge.jcfg" <<EOF
general: {
}
EOF
