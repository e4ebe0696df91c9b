use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::tests::{reg, report};
use crate::{Focus, FocusConfig, FocusError, FocusEvent, RecordingReport, RecordingState, Report};

/// A focus with bridges `a` and `b`; conference `c` has `na` participants on
/// `a` and `nb` on `b` (as their reports say).
fn cluster(na: usize, nb: usize) -> (Focus, Instant) {
    let t0 = Instant::now();
    let mut f = Focus::new(FocusConfig::default());
    for (id, n) in [("a", na), ("b", nb)] {
        f.handle_register(t0, reg(id, "eu")).expect("register");
        f.handle_report(t0, id, with(n, vec![])).expect("report");
    }
    (f, t0)
}

fn with(n: usize, recordings: Vec<RecordingReport>) -> Report {
    let mut r = report(100);
    let mut confs = BTreeMap::new();
    if n > 0 {
        confs.insert("c".to_string(), (0..n).map(|i| format!("p{i}")).collect());
    }
    r.conferences = confs;
    r.recordings = recordings;
    r
}

fn commands(f: &mut Focus) -> Vec<FocusEvent> {
    std::iter::from_fn(|| f.poll_event())
        .filter(|e| {
            matches!(
                e,
                FocusEvent::CommandStartRecording { .. } | FocusEvent::CommandStopRecording { .. }
            )
        })
        .collect()
}

fn reported(id: &str, active: bool, error: &str) -> RecordingReport {
    RecordingReport {
        conference: "c".into(),
        id: id.into(),
        active,
        error: error.into(),
        files: 4,
        bytes: 1000,
    }
}

#[test]
fn a_recording_goes_to_the_bridge_with_most_of_the_conference_and_one_at_a_time() {
    let (mut f, t0) = cluster(1, 3);
    let r = f.start_recording(t0, 1_000, "c").expect("start");
    assert_eq!(r.bridge, "b");
    assert_eq!(
        commands(&mut f),
        vec![FocusEvent::CommandStartRecording {
            bridge: "b".into(),
            conference: "c".into(),
            id: r.id.clone(),
            started_unix_ms: 1_000,
        }]
    );
    assert_eq!(
        f.start_recording(t0, 1_001, "c"),
        Err(FocusError::AlreadyRecording {
            conference: "c".into(),
            id: r.id.clone()
        })
    );
    assert_eq!(
        f.start_recording(t0, 1_001, "nope"),
        Err(FocusError::UnknownConference("nope".into()))
    );
    let stopped = f
        .stop_recording(t0 + Duration::from_secs(5), "c")
        .expect("stop");
    assert_eq!(stopped.state, RecordingState::Stopped);
    assert_eq!(stopped.ended_unix_ms, Some(6_000));
    assert!(matches!(
        commands(&mut f).as_slice(),
        [FocusEvent::CommandStopRecording { bridge, .. }] if bridge == "b"
    ));
    assert_eq!(
        f.stop_recording(t0, "c"),
        Err(FocusError::NotRecording("c".into()))
    );
}

#[test]
fn the_bridges_reports_say_how_a_recording_ended() {
    let (mut f, t0) = cluster(2, 0);
    let r = f.start_recording(t0, 0, "c").expect("start");
    let t1 = t0 + Duration::from_secs(1);
    f.handle_report(t1, "a", with(2, vec![reported(&r.id, true, "")]))
        .expect("report");
    assert_eq!(f.recordings(Some("c"))[0].bytes, 1000);
    f.handle_report(
        t1,
        "a",
        with(2, vec![reported(&r.id, false, "write failed: disk full")]),
    )
    .expect("report");
    let now = &f.recordings(None)[0];
    assert_eq!(now.state, RecordingState::Failed);
    assert_eq!(now.error.as_deref(), Some("write failed: disk full"));

    // Ended without an error: stopped (its conference emptied there).
    let r2 = f.start_recording(t1, 0, "c").expect("a new one");
    f.handle_report(t1, "a", with(2, vec![reported(&r2.id, false, "")]))
        .expect("report");
    assert_eq!(f.recordings(Some("c"))[0].state, RecordingState::Stopped);

    // Never reported by its bridge (the command was lost): failed after 10 s.
    let r3 = f.start_recording(t1, 0, "c").expect("a third");
    f.handle_report(t1 + Duration::from_secs(5), "a", with(2, vec![]))
        .expect("report");
    assert_eq!(f.recordings(Some("c"))[0].state, RecordingState::Active);
    f.handle_report(t1 + Duration::from_secs(11), "a", with(2, vec![]))
        .expect("report");
    let lost = &f.recordings(Some("c"))[0];
    assert_eq!(
        (lost.id.as_str(), lost.state),
        (r3.id.as_str(), RecordingState::Failed)
    );
}

#[test]
fn a_restarted_focus_adopts_the_recordings_its_bridges_run() {
    let (mut f, t0) = cluster(2, 0);
    let id = "rec-1700000000000-7";
    f.handle_report(t0, "a", with(2, vec![reported(id, true, "")]))
        .expect("report");
    let listed = f.recordings(Some("c"));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, RecordingState::Active);
    assert_eq!(listed[0].started_unix_ms, 1_700_000_000_000);
    assert!(matches!(
        f.start_recording(t0, 0, "c"),
        Err(FocusError::AlreadyRecording { .. })
    ));
    let stopped = f.stop_recording(t0, "c").expect("it can be stopped");
    assert_eq!(stopped.id, id);
}

fn notices(f: &mut Focus) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = std::iter::from_fn(|| f.poll_event())
        .filter_map(|e| match e {
            FocusEvent::CommandRecordingNotice { bridge, active, .. } => Some((bridge, active)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_bridge_hears_a_recording_start_and_end_and_so_do_bridges_that_come_later() {
    let (mut f, t0) = cluster(1, 3);
    f.start_recording(t0, 1_000, "c").expect("start");
    // Both bridges, not only the one recording: their participants see it.
    assert_eq!(
        notices(&mut f),
        vec![("a".into(), true), ("b".into(), true)]
    );
    // A bridge that registers while it runs is told.
    f.handle_register(t0, reg("z", "eu")).expect("register");
    assert_eq!(notices(&mut f), vec![("z".into(), true)]);
    // A participant placed on a bridge is told there first (that bridge
    // may have forgotten: it forgets a conference's notice with its last
    // participant there).
    let p = f.allocate(t0, "c", "late", None).expect("placed");
    assert_eq!(notices(&mut f), vec![(p.bridge_id.clone(), true)]);
    // Its end (asked, failed, or reported) goes to every bridge.
    f.stop_recording(t0 + Duration::from_secs(1), "c")
        .expect("stop");
    assert_eq!(
        notices(&mut f),
        vec![
            ("a".into(), false),
            ("b".into(), false),
            ("z".into(), false)
        ]
    );
    // Nothing recorded: a placement tells nothing.
    let _ = f.allocate(t0, "c", "later", None).expect("placed");
    assert_eq!(notices(&mut f), vec![]);
}

/// A report of `bridge` hosting `n` participants of `c` (named after the
/// bridge, so two bridges' participants differ).
fn hosting(bridge: &str, n: usize, recordings: Vec<RecordingReport>) -> Report {
    let mut r = with(0, recordings);
    if n > 0 {
        r.conferences.insert(
            "c".to_string(),
            (0..n).map(|i| format!("{bridge}{i}")).collect(),
        );
    }
    r
}

fn split(na: usize, nb: usize) -> (Focus, Instant) {
    let t0 = Instant::now();
    let mut f = Focus::new(FocusConfig::default());
    for (id, n) in [("a", na), ("b", nb)] {
        f.handle_register(t0, reg(id, "eu")).expect("register");
        f.handle_report(t0, id, hosting(id, n, vec![]))
            .expect("report");
    }
    (f, t0)
}

#[test]
fn a_recording_whose_bridge_loses_the_conference_carries_on_where_the_meeting_goes_on() {
    let (mut f, t0) = split(2, 1);
    let first = f.start_recording(t0, 1_000, "c").expect("start");
    assert_eq!(first.bridge, "a");
    let _ = notices(&mut f);
    // a's participants leave: a reports the conference gone and the
    // recording ended (not asked).
    let t1 = t0 + Duration::from_secs(30);
    f.handle_report(
        t1,
        "a",
        hosting("a", 0, vec![reported(&first.id, false, "")]),
    )
    .expect("report");
    let list = f.recordings(Some("c"));
    assert_eq!(list.len(), 2, "{list:?}");
    let (next, old) = (&list[0], &list[1]);
    assert_eq!(old.state, RecordingState::Stopped);
    assert_eq!(next.state, RecordingState::Active);
    assert_eq!(next.bridge, "b", "where the rest of the meeting is");
    assert_eq!(next.continues.as_deref(), Some(first.id.as_str()));
    assert_eq!(next.started_unix_ms, 31_000, "from where the first ended");
    // b is told to record; the bridges hear of the new one and never that
    // the meeting stopped being recorded.
    let events: Vec<FocusEvent> = std::iter::from_fn(|| f.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        FocusEvent::CommandStartRecording { bridge, id, .. } if bridge == "b" && *id == next.id
    )));
    let told: Vec<(String, bool)> = events
        .iter()
        .filter_map(|e| match e {
            FocusEvent::CommandRecordingNotice {
                bridge, id, active, ..
            } => Some((bridge.clone(), *active && *id == next.id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        vec![("a".into(), true), ("b".into(), true)],
        "{events:?}"
    );

    // Its bridge fails: carried on again where the meeting goes on (a
    // participant joined a again meanwhile).
    f.handle_report(t1, "a", hosting("a", 1, vec![]))
        .expect("report");
    f.handle_disconnect(t1, "b", "connection lost");
    let list = f.recordings(Some("c"));
    assert_eq!(list[1].state, RecordingState::Failed);
    assert_eq!(list[0].state, RecordingState::Active);
    assert_eq!(list[0].bridge, "a");
    assert_eq!(list[0].continues.as_deref(), Some(next.id.as_str()));
}

#[test]
fn a_recording_whose_conference_ends_everywhere_just_stops() {
    let (mut f, t0) = split(2, 0);
    let first = f.start_recording(t0, 0, "c").expect("start");
    let _ = notices(&mut f);
    f.handle_report(
        t0,
        "a",
        hosting("a", 0, vec![reported(&first.id, false, "")]),
    )
    .expect("report");
    let list = f.recordings(Some("c"));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, RecordingState::Stopped);
    assert_eq!(
        notices(&mut f),
        vec![("a".into(), false), ("b".into(), false)]
    );
}

#[test]
fn a_recording_whose_bridge_fails_with_the_whole_meeting_carries_on_where_it_comes_back() {
    let (mut f, t0) = split(2, 0);
    let first = f.start_recording(t0, 1_000, "c").expect("start");
    let _ = notices(&mut f);
    f.handle_disconnect(t0, "a", "connection lost");
    let list = f.recordings(Some("c"));
    assert_eq!(list.len(), 1, "nobody elsewhere yet: {list:?}");
    assert_eq!(list[0].state, RecordingState::Failed);
    assert_eq!(notices(&mut f), vec![], "the pages keep showing it");
    // Its participants rejoin on b; b reports them: the recording carries on.
    let t1 = t0 + Duration::from_secs(3);
    f.handle_report(t1, "b", hosting("b", 2, vec![]))
        .expect("report");
    let list = f.recordings(Some("c"));
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].state, RecordingState::Active);
    assert_eq!(list[0].bridge, "b");
    assert_eq!(list[0].continues.as_deref(), Some(first.id.as_str()));
    assert_eq!(list[0].started_unix_ms, 4_000);
}

#[test]
fn a_failed_recording_waits_30_s_for_its_meeting_and_a_stop_ends_the_wait() {
    let (mut f, t0) = split(2, 0);
    f.start_recording(t0, 0, "c").expect("start");
    f.handle_disconnect(t0, "a", "connection lost");
    let _ = notices(&mut f);
    // Nobody comes back within 30 s: the bridges hear it ended (b keeps
    // reporting, empty).
    f.handle_report(t0 + Duration::from_secs(29), "b", hosting("b", 0, vec![]))
        .expect("report");
    assert_eq!(notices(&mut f), vec![]);
    f.handle_report(t0 + Duration::from_secs(30), "b", hosting("b", 0, vec![]))
        .expect("report");
    f.handle_timeout(t0 + Duration::from_secs(31));
    assert_eq!(notices(&mut f), vec![("b".into(), false)]);
    f.handle_report(t0 + Duration::from_secs(32), "b", hosting("b", 2, vec![]))
        .expect("report");
    assert_eq!(f.recordings(Some("c")).len(), 1, "not carried on so late");

    // A stop while one waits: not carried on, and the bridges hear it.
    let (mut f, t0) = split(2, 0);
    f.start_recording(t0, 0, "c").expect("start");
    f.handle_disconnect(t0, "a", "connection lost");
    let _ = notices(&mut f);
    assert!(matches!(
        f.stop_recording(t0, "c"),
        Err(FocusError::NotRecording(_))
    ));
    assert_eq!(notices(&mut f), vec![("b".into(), false)]);
    f.handle_report(t0 + Duration::from_secs(2), "b", hosting("b", 2, vec![]))
        .expect("report");
    assert_eq!(f.recordings(Some("c")).len(), 1, "not carried on");
}
