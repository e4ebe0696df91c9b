//! Abuse limits shared by the bridge's cores and shells, as plain values
//! with the time passed in: a token bucket, and the signalling limits a
//! connection gets (the shell applies them; they live here so the
//! protocol's numbers are in one place, next to `docs/signalling.md`'s).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Signalling messages a connection may send per second, sustained...
pub const SIGNAL_RATE: f64 = 20.0;
/// ...and in a burst (a join, an offer, constraints and a few source
/// states at once are normal).
pub const SIGNAL_BURST: f64 = 50.0;
/// One `rate_limited` error a second is enough for a flooding client.
pub const RATE_ERROR_EVERY: Duration = Duration::from_secs(1);

/// `rate` per second sustained, `burst` at once; starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            refilled: None,
        }
    }

    /// Take one token; false when there is none left.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(t) = self.refilled {
            let secs = now.saturating_duration_since(t).as_secs_f64();
            self.tokens = (self.tokens + secs * self.rate).min(self.burst);
        }
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A token bucket per key (a client address), for limits on requests that
/// carry no identity yet. Buckets that have refilled are forgotten once the
/// map holds `max_keys`, so memory stays bounded by the number of keys
/// active within a refill time, not by every address ever seen.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    pub fn new(rate: f64, burst: f64, max_keys: usize) -> Self {
        Self {
            rate,
            burst,
            max_keys,
            buckets: HashMap::new(),
        }
    }

    /// Take one token from `key`'s bucket.
    pub fn take(&mut self, key: &K, now: Instant) -> bool {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            // Buckets full again hold nothing a new bucket would not.
            let refill = Duration::from_secs_f64(self.burst / self.rate.max(f64::MIN_POSITIVE));
            self.buckets.retain(|_, b| {
                b.refilled
                    .is_some_and(|t| now.saturating_duration_since(t) < refill)
            });
            if self.buckets.len() >= self.max_keys {
                // Everyone is busy: the newcomer waits rather than the map
                // growing without bound.
                return false;
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(rate, burst))
            .take(now)
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Addresses whose credit is kept at once; a flood of spoofed sources
/// empties the table instead of growing it (an honest client whose credit
/// went with it checks again, as ICE does every few hundred milliseconds).
pub const UNVERIFIED_ADDRESSES: usize = 4096;

/// No amplification: bytes received from each address that has not yet
/// proven itself (ICE) are the most that may be sent to it. Credit is
/// earned by what arrives from the address and spent by what leaves for it.
#[derive(Debug)]
pub struct SendCredit<K> {
    credit: HashMap<K, u64>,
}

impl<K> Default for SendCredit<K> {
    fn default() -> Self {
        Self {
            credit: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> SendCredit<K> {
    /// `n` bytes arrived from `key`.
    pub fn received(&mut self, key: &K, n: usize) {
        if !self.credit.contains_key(key) && self.credit.len() >= UNVERIFIED_ADDRESSES {
            self.credit.clear();
        }
        *self.credit.entry(key.clone()).or_default() += n as u64;
    }

    /// Whether `n` bytes may go to `key` now (and spends them if so).
    pub fn spend(&mut self, key: &K, n: usize) -> bool {
        match self.credit.get_mut(key) {
            Some(c) if *c >= n as u64 => {
                *c -= n as u64;
                true
            }
            _ => false,
        }
    }

    /// `key` proved itself: no more accounting for it.
    pub fn forget(&mut self, key: &K) {
        self.credit.remove(key);
    }

    pub fn len(&self) -> usize {
        self.credit.len()
    }

    pub fn is_empty(&self) -> bool {
        self.credit.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unverified_address_is_sent_at_most_what_it_sent() {
        let mut c = SendCredit::default();
        assert!(!c.spend(&1, 1), "nothing received, nothing sent");
        c.received(&1, 100);
        assert!(c.spend(&1, 64));
        assert!(!c.spend(&1, 64), "36 bytes of credit left");
        assert!(c.spend(&1, 36));
        c.received(&1, 100);
        c.forget(&1);
        assert!(!c.spend(&1, 1), "forgotten: credit gone with it");
        assert!(!c.spend(&2, 1), "credit is per address");
    }

    #[test]
    fn a_flood_of_addresses_empties_the_table_instead_of_growing_it() {
        let mut c = SendCredit::default();
        for k in 0..UNVERIFIED_ADDRESSES * 3 {
            c.received(&k, 10);
            assert!(c.len() <= UNVERIFIED_ADDRESSES);
        }
        let last = UNVERIFIED_ADDRESSES * 3 - 1;
        assert!(c.spend(&last, 10), "the newest address keeps its credit");
    }

    #[test]
    fn allows_a_burst_then_the_sustained_rate() {
        let t = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0);
        let burst = (0..100).take_while(|_| b.take(t)).count();
        assert_eq!(burst, 20);
        let later = t + Duration::from_millis(500);
        let more = (0..100).take_while(|_| b.take(later)).count();
        assert_eq!(more, 5);
    }

    #[test]
    fn each_key_has_its_own_budget_and_idle_keys_are_forgotten_when_full() {
        let t = Instant::now();
        let mut k = KeyedBuckets::new(1.0, 2.0, 2);
        assert!(k.take(&"a", t) && k.take(&"a", t));
        assert!(!k.take(&"a", t), "a's burst is spent");
        assert!(k.take(&"b", t), "b has its own");
        // Full and nobody idle: a third key waits.
        assert!(!k.take(&"c", t));
        // Three seconds on, a and b have refilled: forgotten, c fits.
        let later = t + Duration::from_secs(3);
        assert!(k.take(&"c", later));
        assert_eq!(k.len(), 1);
    }
}
