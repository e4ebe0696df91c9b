//! Random numbers and seeds: the simulation's one source of randomness
//! ([`Rng`], from which every link and participant draws its own stream) and
//! how a scenario picks and reports its seed ([`seed_or`], [`with_seed`]).
//!
//! Nothing here may read the clock or the OS's entropy: a run is a function
//! of its seed.

/// SplitMix64: small, fast, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.f64() < p
    }
}

/// Run `f` for a seed; on panic, say which seed failed so it can be replayed.
pub fn with_seed<T>(seed: u64, f: impl FnOnce(u64) -> T) -> T {
    struct Announce(u64);
    impl Drop for Announce {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!(
                    "simulation failed with seed {} (replay: TERN_SIM_SEED={})",
                    self.0, self.0
                );
            }
        }
    }
    let _a = Announce(seed);
    f(seed)
}

/// The seed for a scenario: `TERN_SIM_SEED` if set, else the given default.
pub fn seed_or(default: u64) -> u64 {
    std::env::var("TERN_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
