//! Failure and drain: a bridge that failed (control stream closed, no report
//! within the heartbeat timeout, or a report saying it is unhealthy) loses
//! its conferences at once; a draining or shutting-down bridge loses them
//! one conference per `drain_interval`, through `CommandMove`.
//!
//! Moved participants come back through `Focus::allocate`: this module must
//! not choose where they go, only say that they must move and why.

use std::time::Instant;

use tracing::warn;

use crate::registry::{self, BridgeState};
use crate::{Focus, FocusEvent};

impl Focus {
    /// Mark a bridge failed: it hosts nothing any more, and each of its
    /// participants is reported `Moved` (their clients re-join on their own:
    /// a failed bridge cannot be commanded).
    pub(crate) fn fail(&mut self, now: Instant, id: &str, reason: String) {
        let Some(b) = self.bridges.get_mut(id) else {
            return;
        };
        warn!(bridge = %id, %reason, "bridge failed");
        b.mark_failed(reason.clone());
        self.reindex(now, id);
        self.recordings_bridge_failed(now, id, &reason);
        let mut moved = Vec::new();
        for (name, conf) in self.conferences.iter_mut() {
            if let Some(ps) = conf.bridges.remove(id) {
                self.relay_dirty.insert(name.clone());
                moved.extend(ps.into_iter().map(|p| (name.clone(), p)));
            }
            conf.pending.retain(|(b, _), _| b != id);
        }
        self.conferences.retain(|_, c| !c.bridges.is_empty());
        self.events.push_back(FocusEvent::BridgeDown {
            id: id.to_string(),
            reason: reason.clone(),
        });
        for (conference, participant) in moved {
            self.events.push_back(FocusEvent::Moved {
                conference,
                participant,
                from: id.to_string(),
                reason: format!("bridge failed: {reason}"),
            });
        }
    }

    /// Fail every online bridge whose last report is older than the
    /// heartbeat timeout (a hung process keeps its stream open).
    pub(crate) fn fail_silent_bridges(&mut self, now: Instant) {
        for (id, d) in registry::silent(&self.bridges, now, self.cfg.heartbeat_timeout) {
            self.fail(now, &id, format!("no report for {} ms", d.as_millis()));
        }
    }

    /// Record an operator's drain (or undrain); a failed or shutting-down
    /// bridge keeps its state but remembers the request for when it returns.
    /// Returns false for an unknown bridge.
    pub(crate) fn request_drain(&mut self, now: Instant, id: &str, draining: bool) -> bool {
        let Some(b) = self.bridges.get_mut(id) else {
            return false;
        };
        b.drain_requested = draining;
        if b.state != BridgeState::Failed && b.state != BridgeState::ShuttingDown {
            b.state = if draining {
                BridgeState::Draining
            } else {
                BridgeState::Operational
            };
            b.next_drain_move = now;
        }
        self.reindex(now, id);
        self.events.push_back(FocusEvent::CommandDrain {
            bridge: id.to_string(),
            draining,
        });
        self.events.push_back(FocusEvent::BridgeDrain {
            id: id.to_string(),
            draining,
        });
        true
    }

    /// Move one conference off each draining or shutting-down bridge whose
    /// interval has passed, so the rest of the cluster absorbs the move
    /// gradually.
    pub(crate) fn drain_step(&mut self, now: Instant) {
        let draining: Vec<String> = self
            .bridges
            .iter()
            .filter(|(_, b)| {
                b.online
                    && matches!(b.state, BridgeState::Draining | BridgeState::ShuttingDown)
                    && b.next_drain_move <= now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in draining {
            let next = self
                .conferences
                .iter()
                .find(|(_, c)| c.bridges.get(&id).is_some_and(|p| !p.is_empty()))
                .map(|(name, _)| name.clone());
            if let Some(b) = self.bridges.get_mut(&id) {
                b.next_drain_move = now + self.cfg.drain_interval;
            }
            if let Some(conf) = next {
                self.relay_dirty.insert(conf.clone());
                let participants: Vec<String> = self
                    .conferences
                    .get_mut(&conf)
                    .and_then(|c| {
                        c.pending.retain(|(b, _), _| *b != id);
                        c.bridges.remove(&id)
                    })
                    .map(|p| p.into_iter().collect())
                    .unwrap_or_default();
                for p in &participants {
                    self.events.push_back(FocusEvent::Moved {
                        conference: conf.clone(),
                        participant: p.clone(),
                        from: id.clone(),
                        reason: "bridge draining".into(),
                    });
                }
                self.events.push_back(FocusEvent::CommandMove {
                    bridge: id.clone(),
                    conference: conf,
                    participants,
                    reason: "bridge draining".into(),
                });
                self.conferences.retain(|_, c| !c.bridges.is_empty());
            }
        }
    }
}
