//! The focus's tunables and their defaults. Plain data, fixed when the
//! `Focus` is built: it must not hold state.

use std::time::Duration;

use crate::Strategy;

#[derive(Debug, Clone)]
pub struct FocusConfig {
    /// Region used when a request names none.
    pub local_region: String,
    /// Regions that are close to each other (e.g. `["eu-west", "eu-central"]`).
    pub region_groups: Vec<Vec<String>>,
    pub strategy: Strategy,
    /// Corrected stress at which a bridge counts as overloaded.
    pub overload_stress: f64,
    /// Participants of one conference one bridge takes before it is overloaded
    /// for that conference.
    pub participant_cap: usize,
    /// Optional: at most this many joins per bridge per minute.
    pub max_joins_per_minute: Option<usize>,
    /// Joins this recent count towards corrected stress.
    pub recent_join_window: Duration,
    /// Stress one participant adds (Jicofo's default 0.01).
    pub participant_stress: f64,
    /// Stress one participant of a mixed conference adds until reports show
    /// it: its forwarding plus a decode and an encode every 20 ms.
    pub mixed_participant_stress: f64,
    /// A bridge that sends no report for this long has failed.
    pub heartbeat_timeout: Duration,
    /// Draining bridges lose one conference to other bridges this often.
    pub drain_interval: Duration,
}

impl Default for FocusConfig {
    fn default() -> Self {
        Self {
            local_region: "local".into(),
            region_groups: Vec::new(),
            strategy: Strategy::RegionBased,
            overload_stress: 0.8,
            participant_cap: 80,
            max_joins_per_minute: None,
            recent_join_window: Duration::from_secs(20),
            participant_stress: 0.01,
            mixed_participant_stress: 0.02,
            heartbeat_timeout: Duration::from_secs(3),
            drain_interval: Duration::from_secs(1),
        }
    }
}
