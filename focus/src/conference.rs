//! Conferences: which bridges host which participants of each conference,
//! the allocations no report confirms yet, and the relay peers each bridge
//! was told (reconciled every tick and after each allocation).
//!
//! It keeps the conference map in agreement with the bridges' reports and
//! the allocations. It must not choose bridges (placement) nor decide that a
//! bridge failed or drains (failure).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::{Focus, FocusEvent};

/// How long an allocation counts as present before a bridge report confirms
/// it: reports lag joins (a participant allocated now connects within a
/// second or two), and must not make it vanish meanwhile.
const PENDING_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub(crate) struct Conference {
    /// bridge id → participants on it.
    pub(crate) bridges: BTreeMap<String, BTreeSet<String>>,
    /// Allocations not yet seen in a report: (bridge, participant) → when.
    pub(crate) pending: BTreeMap<(String, String), Instant>,
    /// The software version of its bridges; others are never added.
    pub(crate) version: Option<String>,
    /// Its one video codec, once an allocation named one.
    pub(crate) video_codec: Option<String>,
}

impl Focus {
    /// Make the conference map agree with what a bridge says it hosts, plus
    /// its allocations too recent to be in the report.
    pub(crate) fn adopt(
        &mut self,
        now: Instant,
        id: &str,
        hosted: &BTreeMap<String, BTreeSet<String>>,
    ) {
        let version = self.bridges.get(id).map(|b| b.reg.version.clone());
        let known = self
            .bridges
            .get(id)
            .map(|b| b.hosts.clone())
            .unwrap_or_default();
        for name in &known {
            let Some(conf) = self.conferences.get_mut(name) else {
                continue;
            };
            let reported = hosted.get(name);
            conf.pending.retain(|(b, p), t| {
                b != id
                    || (now.saturating_duration_since(*t) < PENDING_GRACE
                        && !reported.is_some_and(|r| r.contains(p)))
            });
            let mut set: BTreeSet<String> = reported.cloned().unwrap_or_default();
            set.extend(
                conf.pending
                    .keys()
                    .filter(|(b, _)| b == id)
                    .map(|(_, p)| p.clone()),
            );
            if set.is_empty() {
                conf.bridges.remove(id);
            } else {
                conf.bridges.insert(id.to_string(), set);
            }
        }
        for (name, participants) in hosted {
            let conf = self.conferences.entry(name.clone()).or_default();
            if conf.version.is_none() {
                conf.version = version.clone();
            }
            conf.bridges
                .entry(id.to_string())
                .or_default()
                .extend(participants.iter().cloned());
        }
        let mut now_hosts = BTreeSet::new();
        for name in known.iter().chain(hosted.keys()) {
            let empty = match self.conferences.get(name) {
                Some(c) if c.bridges.contains_key(id) => {
                    now_hosts.insert(name.clone());
                    false
                }
                Some(c) => c.bridges.is_empty(),
                None => false,
            };
            if empty {
                self.conferences.remove(name);
            }
        }
        if let Some(b) = self.bridges.get_mut(id) {
            b.hosts = now_hosts;
        }
    }

    /// Record that `participant` now goes to `bridge` (of `version`): it is
    /// pending there until a report shows it, and on no other bridge (a
    /// re-allocated participant is reconnecting).
    pub(crate) fn place_in_conference(
        &mut self,
        now: Instant,
        conference: &str,
        participant: &str,
        bridge: &str,
        version: String,
    ) {
        let conf = self.conferences.entry(conference.to_string()).or_default();
        conf.version.get_or_insert(version);
        for ps in conf.bridges.values_mut() {
            ps.remove(participant);
        }
        conf.bridges.retain(|_, ps| !ps.is_empty());
        conf.pending.retain(|(_, p), _| p != participant);
        conf.bridges
            .entry(bridge.to_string())
            .or_default()
            .insert(participant.to_string());
        conf.pending
            .insert((bridge.to_string(), participant.to_string()), now);
        if let Some(b) = self.bridges.get_mut(bridge) {
            b.hosts.insert(conference.to_string());
        }
    }

    /// A (re)started bridge knows nothing of its relay peers: forget what it
    /// and its peers were told, so the next reconciliation tells them again
    /// (its relay address may have changed).
    pub(crate) fn forget_relay_peers_of(&mut self, id: &str) {
        self.relay_told
            .retain(|(b, _), peers| *b != id && !peers.iter().any(|(p, _)| *p == id));
    }

    /// Tell every bridge which other bridges share its conferences, when
    /// that changed. Bridges without a relay address cannot take part; a
    /// bridge that re-registers is told everything again (see
    /// `forget_relay_peers_of`). Runs every tick and after each allocation,
    /// so a conference spreading to a new bridge is meshed before its first
    /// participant finishes connecting.
    pub(crate) fn reconcile_relay(&mut self) {
        let mut want: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
        for (name, conf) in &self.conferences {
            if conf.bridges.len() < 2 {
                continue;
            }
            let members: Vec<(String, String)> = conf
                .bridges
                .keys()
                .filter_map(|id| self.bridges.get(id).map(|b| (id, b)))
                .filter(|(_, b)| b.online && !b.reg.relay_addr.is_empty())
                .map(|(id, b)| (id.clone(), b.reg.relay_addr.clone()))
                .collect();
            for (id, _) in &members {
                let peers: Vec<(String, String)> =
                    members.iter().filter(|(o, _)| o != id).cloned().collect();
                if !peers.is_empty() {
                    want.insert((id.clone(), name.clone()), peers);
                }
            }
        }
        let stale: Vec<(String, String)> = self
            .relay_told
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        for key in stale {
            self.relay_told.remove(&key);
            let online = self.bridges.get(&key.0).is_some_and(|b| b.online);
            if online {
                self.events.push_back(FocusEvent::CommandRelayPeers {
                    bridge: key.0,
                    conference: key.1,
                    peers: Vec::new(),
                });
            }
        }
        for (key, peers) in want {
            if self.relay_told.get(&key) != Some(&peers) {
                self.events.push_back(FocusEvent::CommandRelayPeers {
                    bridge: key.0.clone(),
                    conference: key.1.clone(),
                    peers: peers.clone(),
                });
                self.relay_told.insert(key, peers);
            }
        }
    }

    /// Conferences `id` appears in.
    pub(crate) fn conferences_on(&self, id: &str) -> usize {
        self.conferences
            .values()
            .filter(|c| c.bridges.contains_key(id))
            .count()
    }
}
