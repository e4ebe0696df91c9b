//! How a bridge goes away (SIGTERM, or a shutdown the operator asked for).
//!
//! - With a focus: report `shutting_down` and let the focus move the
//!   conferences elsewhere; wait [`FOCUS_NOTICE`] so it has seen a report,
//!   then until no endpoint is left or the drain deadline passes.
//! - Then (at once without a focus): tell every remaining client the bridge
//!   is going away and close its endpoint; give the signalling connections
//!   [`GOODBYE`] to deliver that, and exit.
//!
//! Sans-IO: [`Shutdown::poll`] says what to do next given the time and how
//! many endpoints are left.

use std::time::{Duration, Instant};

/// Long enough for the focus to receive a report saying `shutting_down`
/// (reports go out every second).
pub const FOCUS_NOTICE: Duration = Duration::from_millis(1200);
/// How often the endpoint count is looked at while draining.
pub const DRAIN_CHECK: Duration = Duration::from_millis(250);
/// Time for clients to receive the goodbye before the process exits.
pub const GOODBYE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownStep {
    /// Nothing to do before this time.
    Wait(Instant),
    /// Tell every client the bridge is going away and close its endpoint.
    CloseEndpoints,
    /// Done: stop.
    Exit,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Draining {
        notice_until: Instant,
        deadline: Instant,
    },
    Closing,
    Goodbye {
        until: Instant,
    },
    Done,
}

#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    phase: Phase,
}

impl Shutdown {
    /// Start now; `drain` is the deadline for the focus to move everyone
    /// away, `None` without a focus (nobody would move them).
    pub fn start(now: Instant, drain: Option<Duration>) -> Self {
        let phase = match drain {
            Some(d) => Phase::Draining {
                notice_until: now + FOCUS_NOTICE,
                deadline: now + d.max(FOCUS_NOTICE),
            },
            None => Phase::Closing,
        };
        Self { phase }
    }

    /// Whether the endpoints are still being moved away by the focus (joins
    /// are refused from the start either way).
    pub fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
    }

    /// What to do now, with `endpoints` still connected. Call again after
    /// each step until [`ShutdownStep::Exit`].
    pub fn poll(&mut self, now: Instant, endpoints: usize) -> ShutdownStep {
        match self.phase {
            Phase::Draining {
                notice_until,
                deadline,
            } => {
                if now < notice_until {
                    return ShutdownStep::Wait(notice_until);
                }
                if endpoints > 0 && now < deadline {
                    return ShutdownStep::Wait((now + DRAIN_CHECK).min(deadline));
                }
                self.phase = Phase::Closing;
                self.poll(now, endpoints)
            }
            Phase::Closing => {
                self.phase = Phase::Goodbye {
                    until: now + GOODBYE,
                };
                ShutdownStep::CloseEndpoints
            }
            Phase::Goodbye { until } if now < until => ShutdownStep::Wait(until),
            Phase::Goodbye { .. } | Phase::Done => {
                self.phase = Phase::Done;
                ShutdownStep::Exit
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_focus_endpoints_close_at_once_and_the_bridge_exits_after_the_goodbye() {
        let t = Instant::now();
        let mut s = Shutdown::start(t, None);
        assert_eq!(s.poll(t, 3), ShutdownStep::CloseEndpoints);
        assert_eq!(s.poll(t, 0), ShutdownStep::Wait(t + GOODBYE));
        assert_eq!(s.poll(t + GOODBYE, 0), ShutdownStep::Exit);
    }

    #[test]
    fn with_a_focus_it_waits_for_the_focus_then_until_empty() {
        let t = Instant::now();
        let mut s = Shutdown::start(t, Some(Duration::from_secs(30)));
        assert_eq!(s.poll(t, 0), ShutdownStep::Wait(t + FOCUS_NOTICE));
        let t1 = t + FOCUS_NOTICE;
        assert_eq!(s.poll(t1, 2), ShutdownStep::Wait(t1 + DRAIN_CHECK));
        let t2 = t1 + Duration::from_secs(3);
        assert_eq!(s.poll(t2, 0), ShutdownStep::CloseEndpoints);
        assert_eq!(s.poll(t2 + GOODBYE, 0), ShutdownStep::Exit);
    }

    #[test]
    fn a_drain_that_never_empties_ends_at_the_deadline() {
        let t = Instant::now();
        let mut s = Shutdown::start(t, Some(Duration::from_secs(5)));
        let mut now = t;
        loop {
            match s.poll(now, 7) {
                ShutdownStep::Wait(at) => {
                    assert!(at <= t + Duration::from_secs(5));
                    now = at;
                }
                ShutdownStep::CloseEndpoints => break,
                ShutdownStep::Exit => panic!("exit before closing endpoints"),
            }
        }
        assert_eq!(now, t + Duration::from_secs(5));
    }
}
