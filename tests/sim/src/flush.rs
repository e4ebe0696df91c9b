//! What a bridge's node says, carried out: datagrams onto the links,
//! signalling to its participants, relay writes and dials, the focus
//! stream, the mixing worker (run inline), and its exit.

use bpb::bridge_message::Msg as BridgeMsg;
use tern_focus::{Registration, Report};
use tern_proto::bridge::v1 as bpb;
use tern_sfu::node::Output as NodeOutput;

use crate::Sim;
use crate::event::{Event, ToFocus};
use crate::trace::{canonical_order, server_name};

impl Sim {
    /// Carry out what bridge `b`'s node has to say.
    pub(crate) fn flush_node(&mut self, b: usize) {
        let mut transmits = std::mem::take(&mut self.transmits);
        while let Some(o) = self.bridges[b].node.poll_output() {
            match o {
                NodeOutput::Transmit {
                    destination,
                    contents,
                    ..
                } => {
                    self.egress_bytes[usize::from(self.in_timer)] += contents.len() as u64;
                    if let Some(tap) = self.tap.as_mut() {
                        *tap.sent_to.entry(destination).or_default() += contents.len() as u64;
                        tap.note_srtp(destination, &contents);
                    }
                    transmits.push((destination, contents));
                }
                NodeOutput::Signal { endpoint, message } => {
                    if let Some(&i) = self.by_endpoint.get(&endpoint)
                        && self.peers[i].bridge == b
                    {
                        let t = self.t_us();
                        self.trace.record(t, server_name(&message), i as u64, 1);
                        let at = self.reliable_delay(self.peers[i].down);
                        self.push(
                            at,
                            Event::ToPeer {
                                peer: i,
                                session: endpoint,
                                msg: message,
                            },
                        );
                    }
                }
                NodeOutput::Closed { endpoint } => {
                    let t = self.t_us();
                    self.trace.record(t, "closed", endpoint.0, 0);
                }
                NodeOutput::RelayWrite { peer, bytes } => {
                    if let Some((p, side)) = self.relay_side(b, &peer) {
                        self.relay_write(p, side, bytes);
                    }
                }
                NodeOutput::RelayDatagram { peer, datagram } => {
                    if let Some((p, side)) = self.relay_side(b, &peer) {
                        self.send_relay_datagram(p, side, datagram);
                    }
                }
                NodeOutput::RelayDial { peer, .. } => self.relay_dial(b, &peer),
                NodeOutput::RelayClose { peer, .. } => self.relay_close(b, &peer),
                NodeOutput::FocusConnect => {
                    let at = self.now + self.focus_latency;
                    let connected = self.focus.is_some();
                    self.push(
                        at,
                        Event::FocusStream {
                            bridge: b,
                            connected,
                        },
                    );
                }
                NodeOutput::FocusClose => self.focus_stream_closed(b),
                NodeOutput::ToFocus(m) => {
                    let msg = match m.msg {
                        Some(BridgeMsg::Register(r)) => ToFocus::Register(Registration::from(r)),
                        Some(BridgeMsg::Stats(st)) => ToFocus::Report(Report::from(st)),
                        None => continue,
                    };
                    let at = self.now + self.focus_latency;
                    self.push(
                        at,
                        Event::ToFocus {
                            bridge: b,
                            msg: Box::new(msg),
                        },
                    );
                }
                NodeOutput::Mix(cmd) => {
                    let now = self.now;
                    self.bridges[b].mixer.handle_command(now, cmd);
                }
                NodeOutput::Record(r) => self.bridges[b].recorded.take(r),
                NodeOutput::Exit => {
                    let t = self.t_us();
                    self.trace.record(t, "bridge_exited", b as u64, 0);
                    self.bridges[b].exited = true;
                    self.kill_bridge(b);
                }
            }
        }
        canonical_order(&mut transmits);
        for (destination, contents) in transmits.drain(..) {
            if let Some(&i) = self.by_addr.get(&destination) {
                let down = self.peers[i].down;
                let from = self.bridges[b].addr;
                self.send_datagram(down, from, destination, contents);
            }
        }
        self.transmits = transmits;
    }
}

impl crate::Recorded {
    fn take(&mut self, r: tern_sfu::RecordOutput) {
        use tern_sfu::RecordOutput as R;
        match r {
            R::Write {
                recording,
                file,
                create,
                bytes,
                ..
            } => {
                let k = (recording.to_string(), file.to_string());
                if self.closed.contains(&k) || (!create && !self.files.contains_key(&k)) {
                    self.misordered += 1;
                }
                self.files.entry(k).or_default().extend_from_slice(&bytes);
            }
            R::Close { recording, file } => {
                self.closed
                    .insert((recording.to_string(), file.to_string()));
            }
            R::Metadata {
                recording, json, ..
            } => {
                self.metadata.insert(recording.to_string(), json);
            }
        }
    }
}
