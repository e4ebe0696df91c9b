//! Chaos under load: a focus and three relayed bridges (real processes)
//! carrying nine participants in three conferences (split placement, so
//! every conference crosses the relay mesh), while faults are injected at
//! seeded, random times: a bridge killed with SIGKILL and restarted, a
//! bridge frozen with SIGSTOP and resumed, a bridge drained and undrained,
//! the focus killed and restarted, and a relay link between two bridges
//! partitioned and healed. Every kind happens at least once, in a seeded
//! order.
//!
//! Each participant behaves as the browser client does: when its signalling
//! closes, the bridge tells it to move, or its media stops for
//! [`WATCHDOG`], it asks the focus again (same participant id, retrying
//! with backoff while the focus is down) and joins where it is placed.
//! Measured per participant: for every other participant of its conference,
//! the longest time it received nothing from them, and whether it hears
//! them all again at the end. The run fails if anyone never recovers, or
//! if a gap exceeds [`GAP_LIMIT`] (a bound loose enough for a loaded CI
//! host; the measured figures are printed, and BENCHMARKS.md records runs
//! against the 5 s target).
//!
//! The whole cluster runs in its own network namespace (the test
//! re-executes itself inside it, like the browser tests), so the partition
//! can classify the two bridges' relay traffic on that namespace's `lo`
//! into an HTB class that drops everything (this kernel has no netem and no
//! tc drop action; HTB, u32 and bfifo are there).
//!
//! `TERN_CHAOS_SECS` (default 45) is how long faults are injected;
//! `TERN_CHAOS_SEED` (default 1) chooses their order, targets and times.
//! `scripts/soak.sh chaos` runs a long one. Needs root and `ip`/`tc`.

mod native;
// For its network namespace only; it carries its own copy of
// tern_process.rs, as `native` does.
#[allow(clippy::duplicate_mod)]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use native::cluster_procs::{API, start_focus};
use native::focus_api::{Api, api, try_api};
use native::relay_procs::{pki, start_bridge, wait_online};
use native::tern_process::{Tern, quoted};
use tern::client::{Client, ClientOptions};
use tern_peer::synth::audio_tag;
use tern_proto::focus::v1 as fpb;

const TEST: &str = "participants_hear_everyone_again_after_every_fault_under_load";
const INSIDE: &str = "TERN_CHAOS_NETNS";
const SEATS: usize = 9;
const CONFERENCES: usize = 3;
/// A participant that received nothing for this long rejoins.
const WATCHDOG: Duration = Duration::from_secs(3);
/// The longest gap the suite tolerates (see the module docs).
const GAP_LIMIT: Duration = Duration::from_secs(20);
/// A gap this long counts as the participant being affected by a fault.
const AFFECTED: Duration = Duration::from_millis(1000);
/// Shorter gaps are the ordinary spacing of packets: not recorded.
const RECORDED: Duration = Duration::from_millis(100);
const BRIDGES: [&str; 3] = ["a", "b", "c"];

#[test]
fn participants_hear_everyone_again_after_every_fault_under_load() {
    if std::env::var_os(INSIDE).is_some() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(chaos());
        return;
    }
    let ns = support::NetNs::create().expect("network namespace (needs root and ip)");
    let exe = std::env::current_exe().expect("test binary");
    let status = ns
        .command(&exe)
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, ns.name())
        .status()
        .expect("running the test inside its namespace");
    assert!(
        status.success(),
        "the chaos run inside {} failed",
        ns.name()
    );
}

/// xorshift64*: the same faults for the same seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below((to - from) as usize) as u64)
    }
}

/// What one participant heard.
#[derive(Debug, Default)]
struct Seat {
    /// Publisher tag → when this seat last received anything from it.
    heard: BTreeMap<u32, Instant>,
    /// Silences of [`RECORDED`] or more from one peer: (length, when it
    /// began, peer seat).
    gaps: Vec<(Duration, Instant, usize)>,
    rejoins: BTreeMap<&'static str, u32>,
    /// Set once measuring starts: gaps count from here.
    measuring: bool,
}

fn tag(seat: usize) -> u32 {
    audio_tag(seat as u64 + 1)
}

fn peers(seat: usize) -> impl Iterator<Item = usize> {
    (0..SEATS).filter(move |&o| o != seat && o % CONFERENCES == seat % CONFERENCES)
}

/// Take what `c` received into `seat`'s record; returns whether anything
/// arrived from a peer.
fn absorb(c: &Client, seat: usize, rec: &Mutex<Vec<Seat>>) -> bool {
    let mut at: Vec<(Instant, u32)> = c
        .take_received()
        .into_values()
        .flatten()
        .filter_map(|r| Some((r.at, r.tag?)))
        .collect();
    at.sort();
    let known: BTreeMap<u32, usize> = peers(seat).map(|p| (tag(p), p)).collect();
    let mut recs = rec.lock().unwrap_or_else(|e| e.into_inner());
    let s = &mut recs[seat];
    let mut any = false;
    for (t, from) in at {
        let Some(&peer) = known.get(&from) else {
            continue;
        };
        any = true;
        let last = s.heard.insert(from, t);
        if s.measuring
            && let Some(last) = last
            && t.duration_since(last) >= RECORDED
        {
            s.gaps.push((t - last, last, peer));
        }
    }
    any
}

/// Ask the focus where to go and join there.
async fn join(grpc: SocketAddr, seat: usize) -> anyhow::Result<Client> {
    let mut api = try_api(grpc, API).await?;
    let a = api
        .allocate(fpb::AllocateRequest {
            conference: format!("chaos-{}", seat % CONFERENCES),
            participant: format!("p{seat}"),
            display_name: format!("p{seat}"),
            region: "eu".into(),
            role: fpb::Role::Participant as i32,
            video_codec: String::new(),
            options: None,
        })
        .await?
        .into_inner();
    let addr: SocketAddr = a
        .signal_url
        .trim_start_matches("ws://")
        .trim_end_matches("/signal")
        .parse()?;
    let mut opts = ClientOptions::new(addr, a.token);
    opts.seed = seat as u64 + 1;
    Client::connect(opts).await
}

/// One participant for the whole run, rejoining as the browser client does.
async fn participant(
    grpc: SocketAddr,
    seat: usize,
    rec: Arc<Mutex<Vec<Seat>>>,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(250);
    while !stop.load(Ordering::Relaxed) {
        let c = match tokio::time::timeout(Duration::from_secs(5), join(grpc, seat)).await {
            Ok(Ok(c)) => c,
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        let mut last_media = Instant::now();
        let why = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if absorb(&c, seat, &rec) {
                last_media = Instant::now();
            }
            if stop.load(Ordering::Relaxed) {
                let _ = c.leave().await;
                return;
            }
            if c.is_finished() {
                break "signalling closed";
            }
            if c.state().errors.iter().any(|(kind, _)| kind == "move") {
                break "told to move";
            }
            if last_media.elapsed() > WATCHDOG {
                break "no media";
            }
        };
        c.abort();
        *rec.lock().unwrap_or_else(|e| e.into_inner())[seat]
            .rejoins
            .entry(why)
            .or_default() += 1;
    }
}

struct Cluster {
    dir: std::path::PathBuf,
    focus: Option<Tern>,
    grpc: SocketAddr,
    http: SocketAddr,
    bridges: BTreeMap<&'static str, Tern>,
}

impl Cluster {
    fn start_focus(grpc: &str, http: &str) -> (Tern, SocketAddr, SocketAddr) {
        start_focus(grpc, http, &[("TERN_FOCUS_STRATEGY", quoted("split"))])
    }

    fn restart_focus(&mut self) {
        let (f, _, _) = Cluster::start_focus(&self.grpc.to_string(), &self.http.to_string());
        self.focus = Some(f);
    }

    fn start_bridge(&mut self, id: &'static str) {
        let (p, _) = start_bridge(id, self.grpc, &self.dir, &[]);
        self.bridges.insert(id, p);
    }

    fn pid(&self, id: &str) -> u32 {
        self.bridges[id].pid()
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// `tc` with `line`'s words as its arguments.
fn tc(line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let out = Command::new("tc").args(&args).output().expect("tc");
    assert!(
        out.status.success(),
        "tc {line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A drop-everything HTB class on `lo` (see the module docs); traffic goes
/// there only when a partition's filters send it.
fn prepare_partitions() {
    tc("qdisc add dev lo root handle 1: htb default 10");
    tc("class add dev lo parent 1: classid 1:10 htb rate 10gbit quantum 200000");
    tc("class add dev lo parent 1: classid 1:30 htb rate 8kbit");
    tc("qdisc add dev lo parent 1:30 handle 30: bfifo limit 1");
}

fn partition(a: u16, b: u16) {
    for (from, to) in [(a, b), (b, a)] {
        tc(&format!(
            "filter add dev lo parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff \
             match ip sport {from} 0xffff match ip dport {to} 0xffff flowid 1:30"
        ));
    }
}

fn heal() {
    tc("filter del dev lo parent 1: prio 1");
}

async fn relay_ports(api: &mut Api) -> BTreeMap<String, u16> {
    api.list_bridges(fpb::ListBridgesRequest {})
        .await
        .expect("list bridges")
        .into_inner()
        .bridges
        .into_iter()
        .filter(|b| b.online)
        .filter_map(|b| {
            let port = b.relay_addr.rsplit(':').next()?.parse().ok()?;
            Some((b.id, port))
        })
        .collect()
}

#[derive(Debug)]
struct Fault {
    what: String,
    start: Instant,
    end: Instant,
}

async fn inject(kind: usize, rng: &mut Rng, cl: &mut Cluster) -> Fault {
    let bridge = BRIDGES[rng.below(BRIDGES.len())];
    let start = Instant::now();
    let what = match kind {
        0 => {
            signal(cl.pid(bridge), "-KILL");
            tokio::time::sleep(Duration::from_secs(1)).await;
            cl.start_bridge(bridge);
            format!("SIGKILL bridge {bridge}, restarted after 1 s")
        }
        1 => {
            let pause = rng.millis(2_000, 4_000);
            signal(cl.pid(bridge), "-STOP");
            tokio::time::sleep(pause).await;
            signal(cl.pid(bridge), "-CONT");
            format!("SIGSTOP bridge {bridge} for {} ms", pause.as_millis())
        }
        2 => {
            let mut api = api(cl.grpc, API).await;
            let req = || fpb::DrainBridgeRequest {
                bridge_id: bridge.into(),
            };
            api.drain_bridge(req()).await.expect("drain");
            tokio::time::sleep(Duration::from_secs(5)).await;
            api.undrain_bridge(req()).await.expect("undrain");
            format!("drain bridge {bridge} for 5 s")
        }
        3 => {
            if let Some(f) = &cl.focus {
                signal(f.pid(), "-KILL");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            cl.restart_focus();
            "SIGKILL focus, restarted after 2 s".to_string()
        }
        _ => {
            let mut api = api(cl.grpc, API).await;
            let ports = relay_ports(&mut api).await;
            let other = BRIDGES[(BRIDGES.iter().position(|b| *b == bridge).unwrap_or(0) + 1) % 3];
            let hold = rng.millis(3_000, 5_000);
            match (ports.get(bridge), ports.get(other)) {
                (Some(&a), Some(&b)) => {
                    partition(a, b);
                    tokio::time::sleep(hold).await;
                    heal();
                    format!(
                        "relay partition {bridge}-{other} for {} ms",
                        hold.as_millis()
                    )
                }
                _ => format!("relay partition {bridge}-{other} skipped: not both online"),
            }
        }
    };
    Fault {
        what,
        start,
        end: Instant::now(),
    }
}

async fn chaos() {
    let secs: u64 = std::env::var("TERN_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    let seed: u64 = std::env::var("TERN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let tmp = tempfile::Builder::new()
        .prefix("tern-chaos-")
        .tempdir()
        .expect("tempdir");
    pki(tmp.path(), &BRIDGES);
    prepare_partitions();
    let (focus, grpc, http) = Cluster::start_focus("127.0.0.1:0", "127.0.0.1:0");
    let mut cl = Cluster {
        dir: tmp.path().to_path_buf(),
        focus: Some(focus),
        grpc,
        http,
        bridges: BTreeMap::new(),
    };
    for id in BRIDGES {
        cl.start_bridge(id);
    }
    wait_online(&mut api(grpc, API).await, 3).await;

    let rec = Arc::new(Mutex::new(
        (0..SEATS).map(|_| Seat::default()).collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..SEATS)
        .map(|s| tokio::spawn(participant(grpc, s, rec.clone(), stop.clone())))
        .collect();
    // Load first: everyone hears everyone in their conference.
    let everyone = |rec: &Mutex<Vec<Seat>>| {
        let r = rec.lock().unwrap_or_else(|e| e.into_inner());
        (0..SEATS).all(|s| peers(s).all(|p| r[s].heard.contains_key(&tag(p))))
    };
    native::eventually(
        "everyone hears their conference",
        Duration::from_secs(60),
        || everyone(&rec).then_some(()),
    )
    .await;
    {
        let mut r = rec.lock().unwrap_or_else(|e| e.into_inner());
        for s in r.iter_mut() {
            s.measuring = true;
        }
    }
    let measure_from = Instant::now();

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
    // Every kind once in a seeded order, then random kinds.
    let mut kinds: Vec<usize> = (0..5).collect();
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.below(i + 1));
    }
    let end = Instant::now() + Duration::from_secs(secs);
    let mut faults = Vec::new();
    let mut next = 0;
    while next < kinds.len() || Instant::now() < end {
        tokio::time::sleep(rng.millis(3_000, 6_000)).await;
        let kind = kinds.get(next).copied().unwrap_or_else(|| rng.below(5));
        next += 1;
        let f = inject(kind, &mut rng, &mut cl).await;
        println!(
            "fault at {:>5.1} s: {} (until {:.1} s)",
            (f.start - measure_from).as_secs_f64(),
            f.what,
            (f.end - measure_from).as_secs_f64()
        );
        faults.push(f);
    }
    // Settle, then everyone must hear everyone again.
    let recovered = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = Instant::now();
            let r = rec.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = (0..SEATS).all(|s| {
                peers(s).all(|p| {
                    r[s].heard
                        .get(&tag(p))
                        .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1))
                })
            });
            if fresh {
                return;
            }
        }
    })
    .await;
    let settled = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }

    let r = rec.lock().unwrap_or_else(|e| e.into_inner());
    let report = report(&r, &faults, measure_from, settled);
    println!("{report}");
    let never: Vec<String> = (0..SEATS)
        .flat_map(|s| {
            let r = &r;
            peers(s).filter_map(move |p| {
                let t = r[s].heard.get(&tag(p))?;
                (settled.duration_since(*t) > Duration::from_secs(5))
                    .then(|| format!("p{s} from p{p}"))
            })
        })
        .collect();
    assert!(
        recovered.is_ok() && never.is_empty(),
        "participants who never heard a peer again: {never:?}"
    );
    let worst = r
        .iter()
        .flat_map(|s| s.gaps.iter())
        .map(|g| g.0)
        .max()
        .unwrap_or_default();
    assert!(
        worst <= GAP_LIMIT,
        "longest gap {worst:?} over the limit {GAP_LIMIT:?}"
    );
    drop(r);
    drop(cl);
}

/// Per fault: participants with a gap of [`AFFECTED`] or more that began
/// during it or within 5 s after (before the next fault), and the longest;
/// per participant: its longest gap and rejoins.
fn report(r: &[Seat], faults: &[Fault], t0: Instant, settled: Instant) -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "\nfault | participants with a gap of 1 s or more | longest gap beginning in it\n",
    );
    for (i, f) in faults.iter().enumerate() {
        // Up to 5 s after it ends, but not into the next fault: a gap
        // that begins there is the next fault's.
        let until = faults
            .get(i + 1)
            .map_or(f.end + Duration::from_secs(5), |next| {
                next.start.min(f.end + Duration::from_secs(5))
            });
        let window = f
            .start
            .checked_sub(Duration::from_millis(500))
            .unwrap_or(f.start)..until;
        let mut affected = std::collections::BTreeSet::new();
        let mut longest = Duration::ZERO;
        for (s, seat) in r.iter().enumerate() {
            for &(len, from, _) in &seat.gaps {
                if window.contains(&from) {
                    longest = longest.max(len);
                    if len >= AFFECTED {
                        affected.insert(s);
                    }
                }
            }
        }
        let longest = if longest.is_zero() {
            format!("< {:.2} s", RECORDED.as_secs_f64())
        } else {
            format!("{:.2} s", longest.as_secs_f64())
        };
        let _ = writeln!(
            out,
            "{:>5.1} s {} | {} | {longest}",
            (f.start - t0).as_secs_f64(),
            f.what,
            affected.len(),
        );
    }
    out.push_str("\nparticipant | longest gap (from whom, when) | rejoins\n");
    for (s, seat) in r.iter().enumerate() {
        let g = seat.gaps.iter().max_by_key(|g| g.0);
        let _ = writeln!(
            out,
            "p{s} | {} | {:?}",
            g.map_or(
                format!("< {:.2} s", RECORDED.as_secs_f64()),
                |(len, from, peer)| format!(
                    "{:.2} s (p{peer}, at {:.1} s)",
                    len.as_secs_f64(),
                    (*from - t0).as_secs_f64()
                )
            ),
            seat.rejoins
        );
    }
    let _ = writeln!(out, "measured for {:.0} s", (settled - t0).as_secs_f64());
    out
}
