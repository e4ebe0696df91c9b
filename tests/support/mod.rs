//! End-to-end harness: a real `tern dev` (a focus and two bridges, or an
//! older single bridge; see `env`) and real Chromium browsers, all inside a
//! private network namespace.
//!
//! # Why a namespace, and how the test talks to things inside it
//!
//! Chromium will not use 127.0.0.1 for media unless it has nothing else, and
//! tests must never send traffic outside this machine's loopback (see
//! `shared/reference/machine.md`). So every browser test creates its own
//! namespace `tern-e2e-<pid>-<n>` with only `lo` up, and runs the bridge,
//! chromedriver and Chromium inside it, bound to 127.0.0.1 there. Nothing in
//! the namespace can reach, or be reached from, the host's network.
//!
//! The test itself also has to speak HTTP to chromedriver and to the bridge,
//! which are only reachable from inside. `setns(2)` needs `unsafe` (forbidden
//! in this workspace), a TCP forwarder would expose the namespace, and one
//! `ip netns exec NS curl` per WebDriver call is slow and clumsy. Instead the
//! test **re-executes itself inside the namespace**:
//!
//! 1. The test function (outside) takes a lock so browser tests never overlap,
//!    creates the namespace ([`NetNs`]) and runs
//!    `ip netns exec NS <this test binary> <test name> --exact ...` with
//!    [`NETNS_ENV`] set.
//! 2. In that child, the same test function sees [`NETNS_ENV`], starts the
//!    bridge and chromedriver as its own children (so they inherit the
//!    namespace) and runs the test body with a plain HTTP client ([`Env`]).
//! 3. The outside process streams the child's output, enforces a timeout, and
//!    on drop kills every process left in the namespace (`ip netns pids`) and
//!    deletes it.
//!
//! Each browser is its own WebDriver session with a fresh profile. When a test
//! fails, every browser's `window.tern.state()`, client log and console, and
//! the bridge's log are printed.
//!
//! Environment: `E2E_TIMEOUT_SECS` (default 300) bounds one test;
//! `E2E_KEEP=1` keeps the scratch directory (logs, profiles) under the system
//! temp dir; `TERN_LOG` reaches the bridge (its log filter).
//!
//! Requirements: root, `ip`, `chromedriver`, `/usr/lib/chromium/chromium`
//! (`scripts/install-test-deps.sh` installs them).
#![allow(dead_code, unused_imports)] // Not every test crate uses every helper.

mod env;
pub mod ffmpeg;
mod netns;
mod participant;
mod receiving;
pub mod tern_process;
mod wait;
pub mod wav;
mod webdriver;

pub use env::{Bridge, DevBridge, DevShape, Env, wait_two_bridges_online};
pub use netns::{NETNS_ENV, NetNs, WORKDIR_ENV, run_in_netns};
pub use participant::{
    AudioStats, LocalSource, Participant, PeerStats, RemoteParticipant, SendLimits, SlotStats,
    SpeakingLevel, TernState, Tile, VideoStats,
};
pub use receiving::{CONNECT_TIMEOUT, MEDIA_TIMEOUT, all_see_and_hear_each_other, wait_receiving};
pub use wait::{Check, wait_until};
pub use webdriver::{Browser, WebDriver};
