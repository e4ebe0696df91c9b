use super::*;

/// Sequence headers libaom wrote (`ffmpeg -f lavfi -i testsrc=size=320x240
/// -c:v libaom-av1 -usage realtime -f obu`), as OBUs with size fields, and
/// the `av1C` FFmpeg's Matroska muxer wrote for each (`-c copy x.mkv`).
const SEQ_420: &[u8] = &[
    0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x00, 0x40,
];
const SEQ_444: &[u8] = &[
    0x0a, 0x0d, 0x20, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x20, 0x21, 0xa0, 0x04,
];

#[test]
fn sequence_headers_give_the_size_and_the_av1c_ffmpeg_writes() {
    let info = sequence_info(SEQ_420).expect("parses");
    assert_eq!((info.width, info.height), (320, 240));
    assert_eq!(info.av1c[..4], [0x81, 0x00, 0x0c, 0x00], "profile 0, 4:2:0");
    assert_eq!(&info.av1c[4..], SEQ_420);
    let info = sequence_info(SEQ_444).expect("parses");
    assert_eq!((info.width, info.height), (320, 240));
    assert_eq!(info.av1c[..4], [0x81, 0x20, 0x00, 0x00], "profile 1, 4:4:4");
    // Cut short anywhere: no header rather than a wrong one.
    for n in 0..SEQ_420.len() - 2 {
        assert_eq!(sequence_info(&SEQ_420[..n]), None, "cut at {n}");
    }
}

/// An OBU without its size field, as RTP carries it.
fn bare(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut o = vec![kind << 3];
    o.extend_from_slice(payload);
    o
}

/// An OBU element with its length.
fn element(obu: &[u8]) -> Vec<u8> {
    let mut e = Vec::new();
    write_leb128(&mut e, obu.len() as u64);
    e.extend_from_slice(obu);
    e
}

#[test]
fn elements_across_packets_become_obus_with_size_fields() {
    let seq = &SEQ_420[2..];
    let frame: Vec<u8> = (0..200u8).collect();
    // Packet 1 (N, W=0): the sequence header, a temporal delimiter a
    // sender should not have sent, and the frame's first 150 bytes (Y).
    let mut p1 = vec![0x40 | 0x08];
    p1.extend(element(&bare(1, seq)));
    p1.extend(element(&bare(2, &[])));
    p1.extend(element(&bare(6, &frame[..149])));
    // Packet 2 (Z, W=1): the rest of the frame, the last element without
    // its length.
    let mut p2 = vec![0x80 | 0x10];
    p2.extend_from_slice(&frame[149..]);
    let unit = assemble([&p1[..], &p2[..]]).expect("assembles");
    assert!(unit.keyframe);
    let mut want = SEQ_420.to_vec();
    want.push((6 << 3) | 0x02);
    write_leb128(&mut want, 200);
    want.extend_from_slice(&frame);
    assert_eq!(unit.data, want);
    assert_eq!(unit.sequence_header.as_deref(), Some(SEQ_420));
    // An OBU that carried its own size field keeps it (not doubled).
    let mut p = vec![0x10];
    p.extend_from_slice(SEQ_420);
    let unit = assemble([&p[..]]).expect("assembles");
    assert!(!unit.keyframe);
    assert_eq!(unit.data, SEQ_420);
}

#[test]
fn payloads_that_do_not_make_a_unit_are_refused() {
    let obu = element(&bare(6, &[1, 2, 3]));
    let mut ok = vec![0x00];
    ok.extend_from_slice(&obu);
    assert!(assemble([&ok[..]]).is_ok());
    // Z on the unit's first packet: it continues what is not here.
    let mut z = vec![0x80];
    z.extend_from_slice(&obu);
    assert_eq!(assemble([&z[..]]), Err(RecordError::Av1Payload));
    // Y on the last: the OBU never ends.
    let mut y = vec![0x40];
    y.extend_from_slice(&obu);
    assert_eq!(assemble([&y[..]]), Err(RecordError::Av1Payload));
    // An element longer than the packet.
    assert_eq!(
        assemble([&[0x00, 0x09, 0x30][..]]),
        Err(RecordError::Av1Payload)
    );
    // W=2 with one element.
    assert_eq!(
        assemble([&[0x20, 0x30, 1][..]]),
        Err(RecordError::Av1Payload)
    );
    // The forbidden bit.
    assert_eq!(
        assemble([&[0x10, 0xB0, 1][..]]),
        Err(RecordError::Av1Payload)
    );
    // Nothing but a temporal delimiter: no unit.
    assert_eq!(assemble([&[0x10, 0x10][..]]), Err(RecordError::Av1Payload));
    assert_eq!(assemble([&[][..]]), Err(RecordError::Av1Payload));
}
