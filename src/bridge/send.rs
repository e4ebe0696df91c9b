//! Sending a flush's datagrams. The copies a flush makes are grouped by
//! destination, so the packets one receiver gets in a flush (a frame's
//! packets fanned out) leave as one UDP GSO message where the kernel offers
//! it (`UDP_SEGMENT`: one trip through the stack for up to 64 datagrams,
//! split only at the receiving socket or the device), and up to 32 messages
//! leave in one `sendmmsg` call. Each destination's datagrams keep their
//! order; only the order between destinations changes.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::latency::ForwardLatency;

/// Messages per `sendmmsg` call (one `sendto` per datagram used to cost as
/// much as str0m's own work per packet).
pub const SEND_BATCH: usize = 32;

/// Most datagrams in one GSO message: the kernel's `UDP_MAX_SEGMENTS` on
/// older kernels (newer ones take 128).
const MAX_SEGMENTS: usize = 64;

/// Most payload bytes in one GSO message: one UDP datagram's limit (65,507
/// over IPv4), with room to spare.
const MAX_MESSAGE_BYTES: usize = 65_000;

/// One datagram of a flush.
#[derive(Debug)]
pub struct Datagram {
    pub to: SocketAddr,
    pub data: Vec<u8>,
    /// Kernel receive time (since the Unix epoch) of the oldest client
    /// datagram of the input it was made from, for the forwarding delay.
    /// None: made by a timer, signalling or the relay (not measured).
    pub received: Option<Duration>,
}

impl Datagram {
    /// What a moved-out slot holds for a moment (allocates nothing).
    const MOVED: Datagram = Datagram {
        to: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        data: Vec::new(),
        received: None,
    };
}

/// One `sendmsg` of a call: `count` datagrams of the queue from `start`,
/// all to one destination, each `segment` bytes but the last, which may be
/// shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Message {
    start: usize,
    count: usize,
    segment: usize,
}

/// A shard's outgoing datagrams and how they leave. Buffers are reused
/// between flushes; nothing is allocated per datagram.
pub struct Egress {
    socket: Arc<UdpSocket>,
    /// The datagrams of this flush, in the order they were made until
    /// [`Egress::group`] orders the unsent ones by destination.
    pub queue: Vec<Datagram>,
    /// How many of `queue` have left.
    sent: usize,
    /// Datagrams per GSO message: 1 when the kernel does not offer GSO, the
    /// bridge is told not to use it (`bridge.udp_gso = false`) or the
    /// kernel refused a GSO message with `EIO`.
    segments: usize,
    /// Up to here (an index into `queue`), send one datagram per message:
    /// the kernel refused a GSO message of them.
    split_until: usize,
    latency: ForwardLatency,
    grouping: Grouping,
    call: Vec<Message>,
    stats: EgressStats,
    metrics: [Counter; 3],
}

/// What left how, since the shard started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct EgressStats {
    /// Datagrams sent in GSO messages (two or more to one destination).
    pub gso_datagrams: u64,
    /// Datagrams sent one per message.
    pub plain_datagrams: u64,
    /// GSO messages the kernel refused (their datagrams then went one by
    /// one).
    pub gso_refused: u64,
}

impl Egress {
    pub fn new(socket: Arc<UdpSocket>, shard: u8, max_segments: usize) -> Self {
        let s = shard.to_string();
        Self {
            socket,
            queue: Vec::new(),
            sent: 0,
            segments: max_segments.clamp(1, MAX_SEGMENTS),
            split_until: 0,
            latency: ForwardLatency::new(shard),
            grouping: Grouping::default(),
            call: Vec::with_capacity(SEND_BATCH),
            stats: EgressStats::default(),
            metrics: [
                metrics::counter!("tern_udp_datagrams_sent_total", "shard" => s.clone(), "path" => "gso"),
                metrics::counter!("tern_udp_datagrams_sent_total", "shard" => s.clone(), "path" => "plain"),
                metrics::counter!("tern_udp_gso_refused_total", "shard" => s),
            ],
        }
    }

    /// Once a second, with the shard's other metrics.
    pub fn export(&self) {
        let [gso, plain, refused] = &self.metrics;
        gso.absolute(self.stats.gso_datagrams);
        plain.absolute(self.stats.plain_datagrams);
        refused.absolute(self.stats.gso_refused);
        self.latency.export();
    }

    /// Datagrams not yet sent.
    pub fn pending(&self) -> usize {
        self.queue.len() - self.sent
    }

    /// Send what is queued without waiting (mid-flush: what is ready leaves
    /// before the rest of the input is processed), and hand the buffers
    /// sent to `recycle` at once. Held to the end of the flush, a busy
    /// shard's sent buffers were its largest pool: a meeting of 12 rooms
    /// kept ~430 (8.5 KB per participant, heaptrack), where one input
    /// batch's copies are in flight at a time.
    pub fn send_ready(&mut self, mut recycle: impl FnMut(Vec<u8>)) {
        self.group();
        self.send_now();
        if self.sent > 0 {
            for d in self.queue.drain(..self.sent) {
                recycle(d.data);
            }
            self.split_until = self.split_until.saturating_sub(self.sent);
            self.sent = 0;
        }
    }

    /// Send everything queued, waiting for the socket when its buffer is
    /// full, then hand every buffer to `recycle`.
    pub async fn flush(&mut self, mut recycle: impl FnMut(Vec<u8>)) {
        self.group();
        while self.send_now() {
            if self.socket.writable().await.is_err() {
                break;
            }
        }
        self.sent = 0;
        self.split_until = 0;
        for d in self.queue.drain(..) {
            recycle(d.data);
        }
    }

    fn group(&mut self) {
        self.grouping
            .order(&mut self.queue, self.sent, self.segments);
    }

    /// Send from `sent` on without waiting: whether the socket would block.
    /// A datagram the kernel refuses outright is dropped, as UDP would.
    fn send_now(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        while self.sent < self.queue.len() {
            let segments = if self.sent < self.split_until {
                1
            } else {
                self.segments
            };
            let gso = plan_call(&self.queue, self.sent, segments, &mut self.call);
            let fd = self.socket.as_raw_fd();
            let (queue, call) = (&self.queue, &self.call);
            let result = self.socket.try_io(tokio::io::Interest::WRITABLE, || {
                sendmmsg(fd, queue, call, gso)
            });
            match result {
                Ok(n) => {
                    let n = n.clamp(1, self.call.len());
                    let end = self.call[n - 1].start + self.call[n - 1].count;
                    self.record_sent(self.sent, end);
                    for m in &self.call[..n] {
                        if m.count > 1 {
                            self.stats.gso_datagrams += m.count as u64;
                        } else {
                            self.stats.plain_datagrams += 1;
                        }
                    }
                    self.sent = end;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    let first = self.call[0];
                    if first.count > 1 {
                        // A GSO message refused (a device without checksum
                        // offload says EIO): its datagrams go one by one,
                        // and after EIO this socket sends without GSO.
                        self.stats.gso_refused += 1;
                        self.split_until = first.start + first.count;
                        if e.raw_os_error() == Some(nix::libc::EIO) {
                            warn!(error = %e, "the kernel refused UDP GSO; sending without it");
                            self.segments = 1;
                        }
                    } else {
                        // E.g. an unreachable destination: skip it, send
                        // the rest.
                        debug!(destination = %self.queue[first.start].to, error = %e, "send failed");
                        self.sent += 1;
                    }
                }
            }
        }
        false
    }

    /// The forwarding delay of datagrams `from..to`, just handed to the
    /// kernel: each counts from its input's oldest receive time.
    fn record_sent(&mut self, from: usize, to: usize) {
        let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
            return;
        };
        let mut run: Option<(Duration, u64)> = None;
        for d in &self.queue[from..to] {
            let Some(r) = d.received else { continue };
            match &mut run {
                Some((at, n)) if *at == r => *n += 1,
                _ => {
                    if let Some((at, n)) = run {
                        // A wall clock stepped backwards reads as no
                        // delay, not a panic.
                        self.latency.record(now.saturating_sub(at), n);
                    }
                    run = Some((r, 1));
                }
            }
        }
        if let Some((at, n)) = run {
            self.latency.record(now.saturating_sub(at), n);
        }
    }
}

/// Reused scratch for ordering a flush's unsent datagrams.
#[derive(Default)]
struct Grouping {
    /// Destination -> its index in order of first appearance.
    first: HashMap<SocketAddr, u32>,
    /// Per datagram: its destination's index.
    dest: Vec<u32>,
    /// Per destination: where its datagrams start in `by_dest`.
    start: Vec<u32>,
    /// Datagram indexes, each destination's together, in order.
    by_dest: Vec<u32>,
    /// The messages they make: (rank within the destination, key, start
    /// in `by_dest`, count).
    messages: Vec<(u32, u32, u32, u32)>,
    moved: Vec<Datagram>,
}

impl Grouping {
    /// Reorder `queue[from..]` so that each destination's datagrams are
    /// together and in their order, cut into GSO messages of up to
    /// `segments`; and the messages so that a `sendmmsg` call's one segment
    /// size fits many: each destination's first messages, then its second
    /// ones, ..., each round by segment size.
    fn order(&mut self, queue: &mut Vec<Datagram>, from: usize, segments: usize) {
        let tail = &queue[from..];
        if tail.len() < 2 || segments < 2 {
            return;
        }
        self.first.clear();
        self.dest.clear();
        self.start.clear();
        for d in tail {
            let next = self.first.len() as u32;
            let k = *self.first.entry(d.to).or_insert(next);
            if k == next {
                self.start.push(0);
            }
            self.start[k as usize] += 1;
            self.dest.push(k);
        }
        if self.start.len() == tail.len() {
            // Every datagram to a different destination: nothing to join.
            return;
        }
        let mut at = 0;
        for s in self.start.iter_mut() {
            let n = *s;
            *s = at;
            at += n;
        }
        self.by_dest.clear();
        self.by_dest.resize(tail.len(), 0);
        for (i, &k) in self.dest.iter().enumerate() {
            let slot = &mut self.start[k as usize];
            self.by_dest[*slot as usize] = i as u32;
            *slot += 1;
        }
        // Cut each destination's run into messages.
        self.messages.clear();
        let mut i = 0;
        while i < self.by_dest.len() {
            let to = tail[self.by_dest[i] as usize].to;
            let mut rank = 0;
            while i < self.by_dest.len() && tail[self.by_dest[i] as usize].to == to {
                let m = cut(
                    self.by_dest[i..].iter().map(|&j| &tail[j as usize]),
                    segments,
                );
                // By size: a message of several datagrams needs the call's
                // segment size to be its own, a single one fits any segment
                // size not smaller than itself, so sorted by size a single
                // comes before the messages whose call it can join.
                self.messages
                    .push((rank, m.segment as u32, i as u32, m.count as u32));
                rank += 1;
                i += m.count;
            }
        }
        // Unique keys (the start breaks ties), so the order is the same
        // however the sort works; sort_unstable allocates nothing.
        self.messages.sort_unstable();
        self.moved.clear();
        self.moved.extend(queue.drain(from..));
        let (moved, by_dest) = (&mut self.moved, &self.by_dest);
        queue.extend(
            self.messages
                .iter()
                .flat_map(|&(_, _, start, count)| {
                    by_dest[start as usize..(start + count) as usize]
                        .iter()
                        .map(|&j| j as usize)
                })
                .map(|j| std::mem::replace(&mut moved[j], Datagram::MOVED)),
        );
        self.moved.clear();
    }
}

/// The GSO message that starts with the first of `run` (datagrams to one
/// destination, in order): as many as have the first one's size, up to
/// `segments` and the message size limit, and one shorter to end it.
fn cut<'a>(mut run: impl Iterator<Item = &'a Datagram>, segments: usize) -> Message {
    let Some(first) = run.next() else {
        return Message {
            start: 0,
            count: 0,
            segment: 0,
        };
    };
    let segment = first.data.len();
    let mut count = 1;
    let mut bytes = segment;
    if segment == 0 {
        return Message {
            start: 0,
            count,
            segment,
        };
    }
    for d in run {
        let len = d.data.len();
        if count == segments
            || d.to != first.to
            || len > segment
            || len == 0
            || bytes + len > MAX_MESSAGE_BYTES
        {
            break;
        }
        count += 1;
        bytes += len;
        if len < segment {
            break;
        }
    }
    Message {
        start: 0,
        count,
        segment,
    }
}

/// The messages of the next `sendmmsg` call from `queue[from]` (at least
/// one, at most [`SEND_BATCH`]) into `call`, and the call's segment size
/// when it has a GSO message. One `UDP_SEGMENT` value serves a whole call
/// (nix's `sendmmsg` shares control messages): every message of several
/// datagrams in it has that segment size and every single datagram is no
/// longer (the kernel sends a datagram no longer than the segment size as
/// it is).
fn plan_call(
    queue: &[Datagram],
    from: usize,
    segments: usize,
    call: &mut Vec<Message>,
) -> Option<u16> {
    call.clear();
    let mut gso: Option<usize> = None;
    let mut longest_single = 0;
    let mut at = from;
    while call.len() < SEND_BATCH && at < queue.len() {
        let mut m = cut(queue[at..].iter(), segments);
        m.start = at;
        if m.count > 1 {
            match gso {
                Some(s) if s != m.segment => break,
                None if longest_single > m.segment => break,
                _ => gso = Some(m.segment),
            }
        } else if gso.is_some_and(|s| m.segment > s) {
            break;
        } else {
            longest_single = longest_single.max(m.segment);
        }
        at += m.count;
        call.push(m);
    }
    gso.and_then(|s| u16::try_from(s).ok())
}

/// One `sendmmsg`: how many of `call`'s messages the kernel took.
fn sendmmsg(
    fd: std::os::fd::RawFd,
    queue: &[Datagram],
    call: &[Message],
    gso: Option<u16>,
) -> std::io::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::IoSlice;

    let slices: Vec<IoSlice<'_>> = call
        .iter()
        .flat_map(|m| &queue[m.start..m.start + m.count])
        .map(|d| IoSlice::new(&d.data))
        .collect();
    let mut groups: Vec<&[IoSlice<'_>]> = Vec::with_capacity(call.len());
    let mut at = 0;
    for m in call {
        groups.push(&slices[at..at + m.count]);
        at += m.count;
    }
    let addrs: Vec<Option<SockaddrStorage>> = call
        .iter()
        .map(|m| Some(SockaddrStorage::from(queue[m.start].to)))
        .collect();
    let sent = match gso {
        Some(segment) => {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
                call.len(),
                Some(nix::cmsg_space!(u16)),
            );
            nix::sys::socket::sendmmsg(
                fd,
                &mut headers,
                &groups,
                &addrs,
                [ControlMessage::UdpGsoSegments(&segment)],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(|r| r.count())
        }
        None => {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(call.len(), None);
            nix::sys::socket::sendmmsg(
                fd,
                &mut headers,
                &groups,
                &addrs,
                [],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(|r| r.count())
        }
    };
    sent.map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A datagram to port `to` of `len` bytes whose first two say `id`.
    fn datagram(to: u16, len: usize, id: u16) -> Datagram {
        let mut data = vec![0xab; len.max(2)];
        data[..2].copy_from_slice(&id.to_be_bytes());
        Datagram {
            to: SocketAddr::from(([127, 0, 0, 1], to)),
            data,
            received: None,
        }
    }

    fn id(d: &Datagram) -> u16 {
        u16::from_be_bytes([d.data[0], d.data[1]])
    }

    /// Each destination's datagram ids, in queue order.
    fn per_destination(queue: &[Datagram]) -> HashMap<SocketAddr, Vec<u16>> {
        let mut m: HashMap<SocketAddr, Vec<u16>> = HashMap::new();
        for d in queue {
            m.entry(d.to).or_default().push(id(d));
        }
        m
    }

    /// Orders the queue as a flush does and plans its calls one after the
    /// other, as sending them all at once would.
    fn plan_all(queue: &mut Vec<Datagram>, segments: usize) -> Vec<(Option<u16>, Vec<Message>)> {
        Grouping::default().order(queue, 0, segments);
        let mut calls = Vec::new();
        let mut call = Vec::new();
        let mut at = 0;
        while at < queue.len() {
            let gso = plan_call(queue, at, segments, &mut call);
            let last = call.last().copied().expect("a call has a message");
            at = last.start + last.count;
            calls.push((gso, call.clone()));
        }
        calls
    }

    /// What fan-out makes: each packet of a frame to every receiver, then
    /// the next; `frame` sizes per packet, then one audio packet each.
    fn fan_out(receivers: u16, frame: &[usize], audio: usize) -> Vec<Datagram> {
        let mut queue = Vec::new();
        let mut next = 0;
        for &len in frame.iter().chain([&audio]) {
            for r in 0..receivers {
                queue.push(datagram(5000 + r, len, next));
                next += 1;
            }
        }
        queue
    }

    #[test]
    fn a_receivers_frame_leaves_in_one_message_and_the_flush_in_one_call() {
        let mut queue = fan_out(10, &[1200, 1200, 1200, 700], 90);
        let before = per_destination(&queue);
        let calls = plan_all(&mut queue, 64);
        assert_eq!(per_destination(&queue), before);
        assert_eq!(calls.len(), 1, "{calls:?}");
        let (gso, call) = &calls[0];
        assert_eq!(*gso, Some(1200));
        let counts: Vec<usize> = call.iter().map(|m| m.count).collect();
        assert_eq!(counts, [[4; 10], [1; 10]].concat());
    }

    #[test]
    fn without_gso_the_queue_keeps_its_order_and_goes_one_datagram_per_message() {
        let mut queue = fan_out(3, &[1200, 700], 90);
        let ids: Vec<u16> = queue.iter().map(id).collect();
        let calls = plan_all(&mut queue, 1);
        assert_eq!(queue.iter().map(id).collect::<Vec<_>>(), ids);
        assert!(
            calls
                .iter()
                .all(|(gso, c)| gso.is_none() && c.iter().all(|m| m.count == 1))
        );
        assert_eq!(calls.iter().map(|(_, c)| c.len()).sum::<usize>(), 9);
    }

    #[test]
    fn a_message_stops_at_the_segment_limit_and_at_a_longer_datagram() {
        let mut queue: Vec<Datagram> = (0..7).map(|i| datagram(5000, 1000, i)).collect();
        queue.push(datagram(5000, 1100, 7));
        queue.push(datagram(5000, 1100, 8));
        let calls = plan_all(&mut queue, 4);
        let counts: Vec<(usize, usize)> = calls
            .iter()
            .flat_map(|(_, c)| c.iter().map(|m| (m.count, m.segment)))
            .collect();
        assert_eq!(counts, [(4, 1000), (3, 1000), (2, 1100)]);
        assert_eq!(
            queue.iter().map(id).collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
    }

    proptest! {
        #[test]
        fn every_destination_gets_its_datagrams_in_order_in_messages_the_kernel_splits_back(
            spec in prop::collection::vec(
                (0u16..6, prop::sample::select(vec![60usize, 90, 700, 1100, 1200])),
                0..300,
            ),
            sent in 0usize..40,
            segments in 1usize..=64,
        ) {
            let mut queue: Vec<Datagram> = spec
                .iter()
                .enumerate()
                .map(|(i, &(to, len))| datagram(5000 + to, len, i as u16))
                .collect();
            // A mid-flush send left the first `sent` where they were.
            let sent = sent.min(queue.len());
            let head: Vec<u16> = queue[..sent].iter().map(id).collect();
            let before = per_destination(&queue[sent..]);
            Grouping::default().order(&mut queue, sent, segments);
            prop_assert_eq!(queue[..sent].iter().map(id).collect::<Vec<_>>(), head);
            prop_assert_eq!(per_destination(&queue[sent..]), before);
            let mut call = Vec::new();
            let mut at = sent;
            while at < queue.len() {
                let gso = plan_call(&queue, at, segments, &mut call);
                prop_assert!(!call.is_empty() && call.len() <= SEND_BATCH);
                for m in &call {
                    prop_assert_eq!(m.start, at, "messages follow each other");
                    prop_assert!(m.count >= 1 && m.count <= segments);
                    let ds = &queue[m.start..m.start + m.count];
                    prop_assert!(ds.iter().all(|d| d.to == ds[0].to));
                    prop_assert!(ds.iter().map(|d| d.data.len()).sum::<usize>() <= MAX_MESSAGE_BYTES);
                    let (last, rest) = ds.split_last().expect("not empty");
                    prop_assert!(rest.iter().all(|d| d.data.len() == m.segment));
                    prop_assert!(last.data.len() <= m.segment);
                    if m.count > 1 {
                        // The kernel cuts at the call's one segment size.
                        prop_assert_eq!(gso, Some(m.segment as u16));
                    } else if let Some(g) = gso {
                        // Not longer than it: sent as it is.
                        prop_assert!(last.data.len() <= usize::from(g));
                    }
                    at += m.count;
                }
            }
        }
    }

    /// Real sockets on loopback: what each receiver reads, in order.
    async fn send_and_read(segments: usize, mid_flush: bool) -> (EgressStats, bool) {
        let sender = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let mut receivers = Vec::new();
        for _ in 0..3 {
            receivers.push(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        }
        let mut egress = Egress::new(sender, 0, segments);
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); receivers.len()];
        let mut next = 0u16;
        for frame in 0..6 {
            let sizes = [1200, 1200, 1200, 500 + frame * 100, 90];
            for len in sizes {
                for (r, socket) in receivers.iter().enumerate() {
                    let to = socket.local_addr().expect("addr");
                    let mut d = datagram(to.port(), len, next);
                    d.to = to;
                    next += 1;
                    expected[r].push(d.data.clone());
                    egress.queue.push(d);
                }
            }
        }
        let mut recycled = 0;
        if mid_flush {
            // What leaves mid-flush comes back at once; the rest stays
            // queued for the flush. (Until the reactor has seen the socket
            // writable, a send without waiting would block.)
            egress.socket.writable().await.expect("writable");
            egress.send_ready(|_| recycled += 1);
            assert!(recycled > 0, "loopback takes datagrams at once");
            assert_eq!(recycled + egress.queue.len(), usize::from(next));
            assert_eq!(egress.pending(), egress.queue.len());
        }
        egress.flush(|_| recycled += 1).await;
        assert_eq!(recycled, usize::from(next), "every buffer comes back");
        assert!(egress.queue.is_empty());
        let mut all_match = true;
        for (r, socket) in receivers.iter().enumerate() {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 2048];
            while got.len() < expected[r].len() {
                let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
                    .await
                    .expect("a datagram within 2 s")
                    .expect("recv");
                got.push(buf[..n].to_vec());
            }
            all_match &= got == expected[r];
        }
        (egress.stats, all_match)
    }

    #[tokio::test]
    async fn receivers_read_every_datagram_whole_and_in_order_through_gso() {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let segments = quinn_udp::UdpSocketState::new((&probe).into())
            .expect("socket state")
            .max_gso_segments();
        assert!(segments > 1, "this kernel offers UDP GSO (Linux >= 4.18)");
        let (stats, all_match) = send_and_read(segments, false).await;
        assert!(
            all_match,
            "each receiver reads its datagrams whole, in order"
        );
        // Per receiver and frame: the three full packets and the shorter
        // one in one message, the audio packet alone.
        assert_eq!(stats.gso_datagrams, 6 * 3 * 4, "{stats:?}");
        assert_eq!(stats.plain_datagrams, 6 * 3, "{stats:?}");
        assert_eq!(stats.gso_refused, 0);
    }

    #[tokio::test]
    async fn with_gso_off_every_datagram_goes_alone_and_in_order() {
        let (stats, all_match) = send_and_read(1, false).await;
        assert!(all_match);
        assert_eq!(stats.gso_datagrams, 0);
        assert_eq!(stats.plain_datagrams, 6 * 5 * 3);
    }

    #[tokio::test]
    async fn buffers_sent_mid_flush_come_back_at_once_and_nothing_is_lost() {
        let (stats, all_match) = send_and_read(1, true).await;
        assert!(all_match, "each receiver reads every datagram, in order");
        assert_eq!(stats.plain_datagrams, 6 * 5 * 3);
    }
}
