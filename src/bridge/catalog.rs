//! Metrics that otherwise appear only on their first event (a WHIP
//! session, a signalling error, a relay handshake, a refused TCP
//! connection) are registered at zero when the bridge starts, so every
//! scrape lists the same names: dashboards and alerts can tell "nothing
//! happened" from "not exported", and `docs/metrics.md` can be checked
//! against a scrape. Every bridge metric is listed in that page.

use metrics::{counter, gauge};
use tern_sfu::signal::ErrorCode;

pub fn register_at_zero(relay: bool, ice_tcp: bool) {
    for protocol in ["whip", "whep"] {
        counter!("tern_http_sessions_total", "protocol" => protocol, "outcome" => "created")
            .absolute(0);
    }
    for code in ErrorCode::ALL {
        counter!("tern_signalling_errors_total", "code" => code.as_str()).absolute(0);
    }
    if relay {
        gauge!("tern_relay_connections").set(0.0);
        for direction in ["inbound", "outbound"] {
            counter!("tern_relay_handshakes_total", "direction" => direction).absolute(0);
            counter!("tern_relay_handshakes_failed_total", "direction" => direction).absolute(0);
            for reason in crate::relay_net::refusal::RefusalReason::ALL {
                counter!(
                    "tern_relay_handshakes_refused_total",
                    "direction" => direction,
                    "reason" => reason.label()
                )
                .absolute(0);
            }
        }
    }
    if ice_tcp {
        for reason in [
            "too_many_connections",
            "no_stun",
            "unknown_ufrag",
            "idle",
            "shard_overloaded",
        ] {
            counter!("tern_ice_tcp_dropped_total", "reason" => reason).absolute(0);
        }
    }
}
