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
    /// Forwarding or mixed, as the first allocation asked (`None`: known
    /// only from bridge reports so far, e.g. after a focus restart).
    pub(crate) mode: Option<crate::ConferenceMode>,
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
        // Taken, not cloned: `hosts` is rebuilt below (a report a second
        // from every bridge, each hosting hundreds of conferences).
        let known = self
            .bridges
            .get_mut(id)
            .map(|b| std::mem::take(&mut b.hosts))
            .unwrap_or_default();
        let on_it = |f: &Focus, name: &str| {
            f.conferences
                .get(name)
                .is_some_and(|c| c.bridges.contains_key(id))
        };
        let was_on: BTreeSet<&String> = known
            .iter()
            .chain(hosted.keys())
            .filter(|n| on_it(self, n))
            .collect();
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
            if on_it(self, name) != was_on.contains(name) {
                self.relay_dirty.insert(name.clone());
            }
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
        self.relay_dirty.insert(conference.to_string());
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
        let dirty = &mut self.relay_dirty;
        self.relay_told.retain(|(conf, b), peers| {
            let keep = *b != id && !peers.iter().any(|(p, _)| *p == id);
            if !keep {
                dirty.insert(conf.clone());
            }
            keep
        });
    }

    /// Tell every bridge which other bridges share its conferences, when
    /// that changed. Bridges without a relay address cannot take part; a
    /// bridge that re-registers is told everything again (see
    /// `forget_relay_peers_of`). Runs every tick and after each allocation,
    /// so a conference spreading to a new bridge is meshed before its first
    /// participant finishes connecting. Only conferences marked in
    /// `relay_dirty` are looked at: whatever changes which bridges a
    /// conference is on, or whether they are online, marks it, so the cost
    /// follows the changes, not the number of conferences.
    pub(crate) fn reconcile_relay(&mut self) {
        for name in std::mem::take(&mut self.relay_dirty) {
            self.reconcile_conference(&name);
        }
    }

    fn reconcile_conference(&mut self, name: &str) {
        let want = self.relay_want(name);
        let told: Vec<String> = self
            .relay_told
            .range((name.to_string(), String::new())..)
            .take_while(|((c, _), _)| c == name)
            .map(|((_, b), _)| b.clone())
            .collect();
        for bridge in told {
            if want.iter().any(|(b, _)| *b == bridge) {
                continue;
            }
            self.relay_told.remove(&(name.to_string(), bridge.clone()));
            if self.bridges.get(&bridge).is_some_and(|b| b.online) {
                self.events.push_back(FocusEvent::CommandRelayPeers {
                    bridge,
                    conference: name.to_string(),
                    peers: Vec::new(),
                });
            }
        }
        for (bridge, peers) in want {
            let key = (name.to_string(), bridge);
            if self.relay_told.get(&key) != Some(&peers) {
                self.events.push_back(FocusEvent::CommandRelayPeers {
                    bridge: key.1.clone(),
                    conference: name.to_string(),
                    peers: peers.clone(),
                });
                self.relay_told.insert(key, peers);
            }
        }
    }

    /// Each bridge of conference `name` that must relay, with its peers
    /// (id, relay address), in bridge id order.
    fn relay_want(&self, name: &str) -> Vec<(String, Vec<(String, String)>)> {
        let Some(conf) = self.conferences.get(name).filter(|c| c.bridges.len() >= 2) else {
            return Vec::new();
        };
        let members: Vec<(String, String)> = conf
            .bridges
            .keys()
            .filter_map(|id| self.bridges.get(id).map(|b| (id, b)))
            .filter(|(_, b)| b.online && !b.reg.relay_addr.is_empty())
            .map(|(id, b)| (id.clone(), b.reg.relay_addr.clone()))
            .collect();
        if members.len() < 2 {
            return Vec::new();
        }
        members
            .iter()
            .map(|(id, _)| {
                let peers = members.iter().filter(|(o, _)| o != id).cloned().collect();
                (id.clone(), peers)
            })
            .collect()
    }

    /// What the relay commands would say if every conference were worked
    /// out afresh: the incremental bookkeeping must always agree with it.
    #[cfg(test)]
    pub(crate) fn relay_want_all(&self) -> BTreeMap<(String, String), Vec<(String, String)>> {
        self.conferences
            .keys()
            .flat_map(|name| {
                self.relay_want(name)
                    .into_iter()
                    .map(move |(b, peers)| ((name.clone(), b), peers))
            })
            .collect()
    }

    /// Conferences `id` appears in.
    pub(crate) fn conferences_on(&self, id: &str) -> usize {
        self.conferences
            .values()
            .filter(|c| c.bridges.contains_key(id))
            .count()
    }
}
