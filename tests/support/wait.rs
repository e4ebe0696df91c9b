//! Polling with a deadline and a failure message that says what was last seen.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// What a probe found.
pub enum Check<T> {
    Done(T),
    /// Not yet; the text describes the current state for the timeout message.
    NotYet(String),
}

const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Calls `probe` every 200 ms until it returns `Done` or `timeout` passes.
/// An `Err` from the probe aborts the wait at once (something is broken, not
/// just slow).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Check<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut polls = 0u32;
    loop {
        polls += 1;
        match probe()? {
            Check::Done(v) => return Ok(v),
            Check::NotYet(state) => {
                if start.elapsed() >= timeout {
                    bail!(
                        "timed out after {timeout:?} ({polls} polls) waiting for {what}; last seen: {state}"
                    );
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
