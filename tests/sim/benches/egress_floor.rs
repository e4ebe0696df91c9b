//! Issue 20's "measure before changing": what one forwarded copy costs when
//! the bridge writes it itself, next to str0m's send path. Per copy: the RTP
//! header (12 bytes and an 8-byte one-byte-header extension: the receiver's
//! own sequence number, timestamp, SSRC and transport-wide number), the
//! 1,100-byte payload copied from the publisher's packet, and the SRTP
//! protection, sealed in place into a batch buffer reused from one flush to
//! the next (what `sendmmsg` or GSO would then take).
//!
//! Two SRTP profiles, as str0m negotiates them: AEAD_AES_256_GCM (str0m's
//! first choice, what Chromium takes; RFC 7714 nonce from the salt, SSRC,
//! rollover counter and sequence number; the header authenticated, the
//! payload encrypted, a 16-byte tag) and AES_CM_128_HMAC_SHA1_80 (RFC 3711:
//! AES-CTR over the payload, HMAC-SHA1 over header, payload and rollover
//! counter, 10 bytes of it). And for each, the same work with a fresh
//! output buffer per packet, as str0m's `SrtpContext::protect_rtp` does
//! (`vec![0; len + tag]`, then a copy in), to show what pooling buys.
//!
//! The last rows seal each copy with the next of 70 or 560 receivers' own
//! keys, numbering and SSRC (a compact per-receiver record, as an egress
//! fast path would keep), to show what a fan-out's turn through its
//! receivers costs when their state is that small.
//!
//! `cargo bench -p tern-sim --bench egress_floor` (release; each figure the
//! fastest of five runs of 2,000,000 copies). str0m's own send cost per
//! datagram, measured with real str0m connections, is the "bridge send"
//! column of `tests/sim/tests/str0m_floor.rs` (BENCHMARKS.md, "The floor").
//! Results in BENCHMARKS.md ("Egress floor").

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac;

const PAYLOAD: usize = 1_100;
const HEADER: usize = 12 + 8;
/// Datagrams a batch holds before it is flushed (what one `sendmmsg` takes).
const BATCH: usize = 32;
const SLOT: usize = 1_500;
const COPIES: u32 = 2_000_000;

/// Write one receiver's RTP header for copy `n` into `out`.
fn header(out: &mut [u8], n: u32, ssrc: u32) {
    out[0] = 0x90; // V=2, X
    out[1] = 96;
    out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    out[4..8].copy_from_slice(&n.wrapping_mul(3000).to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    // One-byte header extension: transport-wide sequence number (id 3).
    out[12..16].copy_from_slice(&[0xBE, 0xDE, 0x00, 0x01]);
    out[16] = (3 << 4) | 1;
    out[17..19].copy_from_slice(&(n as u16).to_be_bytes());
    out[19] = 0;
}

/// RFC 7714 section 8.1: the 12-byte IV, salt XOR (0, 0, SSRC, ROC, SEQ).
fn gcm_iv(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..12].copy_from_slice(&index.to_be_bytes()[2..8]);
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

/// RFC 3711 section 4.1.1: the 16-byte counter, (salt << 16) XOR (SSRC << 64)
/// XOR (index << 16).
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..8]) {
        *b ^= s;
    }
    iv
}

trait Seal {
    /// Protect `packet[..len]` (header then payload) in place; the tag goes
    /// after it. The new length.
    fn seal(&mut self, packet: &mut [u8], len: usize, ssrc: u32, index: u64) -> usize;
}

struct Gcm {
    key: LessSafeKey,
    salt: [u8; 12],
}

impl Seal for Gcm {
    fn seal(&mut self, packet: &mut [u8], len: usize, ssrc: u32, index: u64) -> usize {
        let nonce = Nonce::assume_unique_for_key(gcm_iv(&self.salt, ssrc, index));
        let (head, rest) = packet.split_at_mut(HEADER);
        let body = len - HEADER;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&head[..]), &mut rest[..body])
            .expect("seal");
        rest[body..body + 16].copy_from_slice(tag.as_ref());
        len + 16
    }
}

struct Cm {
    key: EncryptingKey,
    auth: hmac::Key,
    salt: [u8; 14],
}

impl Seal for Cm {
    fn seal(&mut self, packet: &mut [u8], len: usize, ssrc: u32, index: u64) -> usize {
        let iv = cm_iv(&self.salt, ssrc, index);
        self.key
            .less_safe_encrypt(
                &mut packet[HEADER..len],
                EncryptionContext::Iv128(iv.into()),
            )
            .expect("encrypt");
        let mut ctx = hmac::Context::with_key(&self.auth);
        ctx.update(&packet[..len]);
        ctx.update(&((index >> 16) as u32).to_be_bytes());
        let tag = ctx.sign();
        packet[len..len + 10].copy_from_slice(&tag.as_ref()[..10]);
        len + 10
    }
}

/// One receiver as a compact fast path would hold it: its own key, salt,
/// SSRC and numbering (56 bytes, and aws-lc's key context behind the key:
/// its key schedule and GHASH tables).
struct Receiver {
    gcm: Gcm,
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
}

/// Each copy for the next of `receivers`, as a bridge's fan-out goes:
/// every receiver's key is used once per round of all of them.
struct Fanned {
    receivers: Vec<Receiver>,
    next: usize,
}

impl Fanned {
    fn new(n: usize) -> Self {
        let receivers = (0..n)
            .map(|i| {
                let mut key = [7u8; 32];
                key[..8].copy_from_slice(&(i as u64).to_be_bytes());
                Receiver {
                    gcm: Gcm {
                        key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("key")),
                        salt: [9; 12],
                    },
                    ssrc: 0x1000 + i as u32,
                    seq_offset: (i as u16).wrapping_mul(7919),
                    ts_offset: (i as u32).wrapping_mul(104_729),
                }
            })
            .collect();
        Fanned { receivers, next: 0 }
    }
}

impl Seal for Fanned {
    fn seal(&mut self, packet: &mut [u8], len: usize, _: u32, index: u64) -> usize {
        let at = self.next;
        self.next = (at + 1) % self.receivers.len();
        let r = &mut self.receivers[at];
        // The receiver's own numbering over the header the caller wrote.
        let seq = (index as u16).wrapping_add(r.seq_offset);
        let ts = (index as u32).wrapping_mul(3000).wrapping_add(r.ts_offset);
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&ts.to_be_bytes());
        packet[8..12].copy_from_slice(&r.ssrc.to_be_bytes());
        r.gcm.seal(packet, len, r.ssrc, index)
    }
}

/// `COPIES` copies of one payload to receivers, pooled: sealed in place
/// into a batch buffer that lives for the whole run.
fn pooled(seal: &mut dyn Seal, payload: &[u8]) -> Duration {
    let mut batch = vec![0u8; BATCH * SLOT];
    let mut lens = [0usize; BATCH];
    let t0 = Instant::now();
    for n in 0..COPIES {
        let i = n as usize % BATCH;
        let slot = &mut batch[i * SLOT..(i + 1) * SLOT];
        let ssrc = 0x1000 + n % 64;
        header(slot, n, ssrc);
        slot[HEADER..HEADER + PAYLOAD].copy_from_slice(payload);
        lens[i] = seal.seal(slot, HEADER + PAYLOAD, ssrc, u64::from(n));
        if i + 1 == BATCH {
            // The flush: what a `sendmmsg` would take.
            black_box((&batch, &lens));
        }
    }
    t0.elapsed()
}

/// The same, with a fresh buffer per packet (str0m's `protect_rtp`).
fn allocating(seal: &mut dyn Seal, payload: &[u8]) -> Duration {
    let mut plain = vec![0u8; HEADER + PAYLOAD];
    let t0 = Instant::now();
    for n in 0..COPIES {
        let ssrc = 0x1000 + n % 64;
        header(&mut plain, n, ssrc);
        plain[HEADER..].copy_from_slice(payload);
        let mut out = vec![0u8; HEADER + PAYLOAD + 16];
        out[..HEADER + PAYLOAD].copy_from_slice(&plain);
        let len = seal.seal(&mut out, HEADER + PAYLOAD, ssrc, u64::from(n));
        out.truncate(len);
        black_box(out);
    }
    t0.elapsed()
}

/// The sealed packets are what a receiver's SRTP opens: GCM's checked by
/// opening one with the same key and IV.
fn check_gcm() {
    let key_bytes = [7u8; 32];
    let mut g = Gcm {
        key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key_bytes).expect("key")),
        salt: [9; 12],
    };
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| i as u8).collect();
    let mut p = vec![0u8; SLOT];
    header(&mut p, 77, 0x1234);
    p[HEADER..HEADER + PAYLOAD].copy_from_slice(&payload);
    let len = g.seal(&mut p, HEADER + PAYLOAD, 0x1234, 77);
    let open = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key_bytes).expect("key"));
    let nonce = Nonce::assume_unique_for_key(gcm_iv(&[9; 12], 0x1234, 77));
    let (head, rest) = p[..len].split_at_mut(HEADER);
    let plain = open
        .open_in_place(nonce, Aad::from(&head[..]), rest)
        .expect("a sealed packet opens");
    assert_eq!(plain, &payload[..]);
}

/// Builds a fresh sealer for each run.
type MakeSeal = Box<dyn Fn() -> Box<dyn Seal>>;

fn fastest(mut f: impl FnMut() -> Duration) -> Duration {
    (0..5).map(|_| f()).min().unwrap_or_default()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    check_gcm();
    let payload = vec![0x5au8; PAYLOAD];
    let gcm = || Gcm {
        key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("key")),
        salt: [9; 12],
    };
    let cm = || Cm {
        key: EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, &[7; 16]).expect("key"))
            .expect("ctr"),
        auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &[8; 20]),
        salt: [9; 14],
    };
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(COPIES);
    // Header and copy alone: the floor under any cipher.
    struct Plain;
    impl Seal for Plain {
        fn seal(&mut self, _: &mut [u8], len: usize, _: u32, _: u64) -> usize {
            len
        }
    }
    let rows: [(&str, MakeSeal); 5] = [
        (
            "no protection (header + copy)",
            Box::new(|| Box::new(Plain)),
        ),
        ("AEAD_AES_256_GCM", Box::new(move || Box::new(gcm()))),
        ("AES_CM_128_HMAC_SHA1_80", Box::new(move || Box::new(cm()))),
        // A bridge's fan-out: each copy for another receiver, with its own
        // key (str0m's `send_rtp_now` to 560 receivers in turn costs
        // 2.5-4.7 µs a copy: tests/sim/tests/str0m_floor.rs).
        (
            "AEAD_AES_256_GCM, 70 receivers in turn",
            Box::new(|| Box::new(Fanned::new(70))),
        ),
        (
            "AEAD_AES_256_GCM, 560 receivers in turn",
            Box::new(|| Box::new(Fanned::new(560))),
        ),
    ];
    for (name, make) in rows {
        let p = fastest(|| pooled(make().as_mut(), &payload));
        let a = fastest(|| allocating(make().as_mut(), &payload));
        println!(
            "{name}: pooled, in place {:.0} ns per copy; a buffer per packet {:.0} ns",
            per(p),
            per(a)
        );
    }
}
