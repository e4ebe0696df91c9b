//! The recordings directory: the shards' `Output::Record`s carried out on
//! one writer thread, so a slow disk never stalls a shard. It decides
//! nothing: names come from the core (made safe there), and any error
//! goes back to the conference's shard, which stops that recording.
//!
//! - A file is created with `create_new` (never over an existing one) and
//!   only appended to; each write is handed to the kernel at once, so what
//!   a crash leaves is what the core had flushed (every 500 ms).
//! - The metadata file is replaced whole (written aside, then renamed).
//! - Bytes handed over but not yet written are bounded
//!   ([`MAX_BACKLOG_BYTES`]): beyond it the disk is not keeping up, and
//!   the recording whose write did not fit fails rather than the bridge
//!   holding its media in memory without end.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use tern_sfu::node::{ShardInput, shard_of_room};
use tern_sfu::{METADATA_FILE, RecordOutput};
use tokio::sync::mpsc as tmpsc;
use tracing::{error, warn};

use super::msg::ShardMsg;

/// Bytes waiting for the writer before recordings start failing.
pub const MAX_BACKLOG_BYTES: u64 = 256 << 20;

/// What the writer thread is handed.
enum Job {
    Out(RecordOutput),
    /// Answer once everything handed before is written (shutdown).
    Sync(mpsc::Sender<()>),
}

/// The shards' handle on the writer.
#[derive(Clone)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Job>>,
    backlog: Arc<AtomicU64>,
    shards: Vec<tmpsc::Sender<ShardMsg>>,
}

impl Recorder {
    /// A writer into `dir` (empty: this bridge does not record).
    pub fn start(dir: &str, shards: Vec<tmpsc::Sender<ShardMsg>>) -> Self {
        let backlog = Arc::new(AtomicU64::new(0));
        let written = metrics::counter!("tern_recording_bytes_written_total");
        let failures = metrics::counter!("tern_recording_write_failures_total");
        written.absolute(0);
        failures.absolute(0);
        let tx = if dir.is_empty() {
            None
        } else {
            let (tx, rx) = mpsc::channel();
            let mut w = Writer {
                dir: PathBuf::from(dir),
                open: HashMap::new(),
                failed: HashSet::new(),
                backlog: backlog.clone(),
                shards: shards.clone(),
                written,
                failures,
            };
            let span = tracing::info_span!("recorder");
            match std::thread::Builder::new()
                .name("tern-recorder".into())
                .spawn(move || span.in_scope(|| w.run(rx)))
            {
                Ok(_) => Some(tx),
                Err(e) => {
                    error!(error = %e, "could not start the recording writer");
                    None
                }
            }
        };
        Self {
            tx,
            backlog,
            shards,
        }
    }

    /// Hand one output to the writer; when it cannot take it, the
    /// recording fails (its shard hears why).
    pub fn send(&self, o: RecordOutput) {
        let size = match &o {
            RecordOutput::Write { bytes, .. } => bytes.len() as u64,
            RecordOutput::Metadata { json, .. } => json.len() as u64,
            RecordOutput::Close { .. } => 0,
        };
        let refusal = match &self.tx {
            None => Some("this bridge has no recordings directory (bridge.recordings_dir)"),
            Some(_) if self.backlog.load(Ordering::Relaxed) + size > MAX_BACKLOG_BYTES => {
                Some("the disk is not keeping up (256 MiB waiting to be written)")
            }
            Some(_) => None,
        };
        if let Some(why) = refusal {
            if let RecordOutput::Write {
                room, recording, ..
            }
            | RecordOutput::Metadata {
                room, recording, ..
            } = &o
            {
                fail(&self.shards, room, recording, why.to_owned());
            }
            return;
        }
        self.backlog.fetch_add(size, Ordering::Relaxed);
        if let Some(tx) = &self.tx
            && tx.send(Job::Out(o)).is_err()
        {
            error!("the recording writer is gone");
        }
    }

    /// Wait (up to `timeout`) until everything handed over so far is
    /// written and on disk: a bridge that exits after ending its
    /// recordings calls this, or their last bytes and final metadata would
    /// go with the process. False when it timed out.
    pub fn sync(&self, timeout: std::time::Duration) -> bool {
        let Some(tx) = &self.tx else {
            return true;
        };
        let (ack, done) = mpsc::channel();
        tx.send(Job::Sync(ack)).is_ok() && done.recv_timeout(timeout).is_ok()
    }
}

fn fail(shards: &[tmpsc::Sender<ShardMsg>], room: &str, recording: &str, error: String) {
    let s = shard_of_room(room, shards.len());
    let msg = ShardMsg::Core(ShardInput::RecordingFailed {
        room: room.to_owned(),
        id: recording.to_owned(),
        error,
    });
    if let Some(tx) = shards.get(s) {
        // The shard may be busy: the failure must still arrive.
        let tx = tx.clone();
        if let Err(tmpsc::error::TrySendError::Full(msg)) = tx.try_send(msg) {
            std::thread::spawn(move || {
                let _ = tx.blocking_send(msg);
            });
        }
    }
}

struct Writer {
    dir: PathBuf,
    open: HashMap<(Arc<str>, Arc<str>), File>,
    /// Recordings that failed: what still comes for them is dropped.
    failed: HashSet<Arc<str>>,
    backlog: Arc<AtomicU64>,
    shards: Vec<tmpsc::Sender<ShardMsg>>,
    written: metrics::Counter,
    failures: metrics::Counter,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            match job {
                Job::Out(o) => self.take(o),
                Job::Sync(ack) => {
                    for f in self.open.values() {
                        let _ = f.sync_data();
                    }
                    let _ = ack.send(());
                }
            }
        }
    }

    fn take(&mut self, o: RecordOutput) {
        match o {
            RecordOutput::Write {
                room,
                recording,
                file,
                create,
                bytes,
            } => {
                self.backlog
                    .fetch_sub(bytes.len() as u64, Ordering::Relaxed);
                if self.failed.contains(&recording) {
                    return;
                }
                let r = self.append(&recording, &file, create, &bytes);
                match r {
                    Ok(()) => self.written.increment(bytes.len() as u64),
                    Err(e) => self.failed(&room, &recording, format!("{file}: {e}")),
                }
            }
            RecordOutput::Close { recording, file } => {
                if let Some(f) = self.open.remove(&(recording.clone(), file))
                    && let Err(e) = f.sync_data()
                {
                    warn!(recording = %recording, error = %e, "sync on close failed");
                }
            }
            RecordOutput::Metadata {
                room,
                recording,
                json,
            } => {
                self.backlog.fetch_sub(json.len() as u64, Ordering::Relaxed);
                if self.failed.contains(&recording) {
                    return;
                }
                if let Err(e) = self.metadata(&recording, &json) {
                    self.failed(&room, &recording, format!("{METADATA_FILE}: {e}"));
                }
            }
        }
    }

    fn append(
        &mut self,
        recording: &Arc<str>,
        file: &Arc<str>,
        create: bool,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let key = (recording.clone(), file.clone());
        if create {
            let dir = self.dir.join(&**recording);
            std::fs::create_dir_all(&dir)?;
            let f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(dir.join(&**file))?;
            self.open.insert(key.clone(), f);
        }
        match self.open.get_mut(&key) {
            Some(f) => f.write_all(bytes),
            None => Err(std::io::Error::other("written to before it was created")),
        }
    }

    fn metadata(&self, recording: &str, json: &str) -> std::io::Result<()> {
        let dir = self.dir.join(recording);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{METADATA_FILE}.tmp"));
        write_file(&tmp, json.as_bytes())?;
        std::fs::rename(&tmp, dir.join(METADATA_FILE))
    }

    fn failed(&mut self, room: &str, recording: &Arc<str>, error: String) {
        error!(room, recording = %recording, %error, "recording write failed");
        self.failures.increment(1);
        self.failed.insert(recording.clone());
        self.open.retain(|(r, _), _| r != recording);
        fail(&self.shards, room, recording, error);
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}
