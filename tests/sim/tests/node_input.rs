//! A bridge node never panics on what the network sends it: arbitrary bytes
//! as media datagrams, signalling, relay control and datagrams, and focus
//! commands (the same driver as the `node_input` fuzz target, which runs far
//! longer; this keeps it exercised in CI).

use std::time::Instant;

use proptest::prelude::*;
use tern_sim::node_input::{drive, node};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_node_survives_any_sequence_of_network_input(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let start = Instant::now();
        let mut n = node(start);
        let end = drive(&mut n, start, &data);
        // Still a working state machine afterwards: it answers for time.
        prop_assert!(n.poll_timeout() > start);
        prop_assert!(end >= start);
    }
}

#[test]
fn garbage_on_every_path_is_dropped_and_counted_not_fatal() {
    let start = Instant::now();
    let mut n = node(start);
    // A relay connection, then bytes that are no relay control frame, a
    // datagram shorter than the relay header, a media datagram from an
    // address nobody authenticated, and a focus command that decodes to
    // nothing useful.
    let input = [
        4, 0, // RelayConnected b0
        6, 3, 1, 2, 3, // RelayDatagrams b0: 3 bytes
        0, 4, 9, 9, 9, 9, // a datagram from 127.0.0.1
        5, 5, 0xff, 0xff, 0xff, 0xff, 0xff, // RelayStream b0: garbage
    ];
    drive(&mut n, start, &input);
    let st = n.stats();
    assert_eq!(st.unknown_source, 1, "{st:?}");
    assert_eq!(st.relay_malformed, 1, "{st:?}");
    assert!(
        !n.relay_up("b0"),
        "a peer sending garbage is not a ready link"
    );
}
