//! The Janus VideoRoom target (`--target janus`): the same participants,
//! driven through Janus's HTTP API instead of Tern signalling.
//!
//! Not implemented yet: Janus is the offerer towards subscribers, and
//! [`tern_sfu::peer::Peer`] only ever offers (Tern's model). The seam is
//! here so the load loop does not change when it lands; until then the
//! target fails fast with a clear error instead of pretending.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::bail;
use tern_sfu::peer::Peer;
use tern_sfu::signal::{ClientMessage, ServerMessage};

pub struct Session;

impl Session {
    pub async fn open(
        _server: SocketAddr,
        _base: &str,
        _room: &str,
        _name: &str,
    ) -> anyhow::Result<Session> {
        bail!(
            "--target janus is not implemented yet (needs answer support in tern_sfu::peer::Peer)"
        )
    }

    pub async fn start(
        &mut self,
        _peer: &mut Peer,
        _publish: bool,
        _now: Instant,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    pub async fn send(&mut self, _peer: &mut Peer, _m: ClientMessage) -> anyhow::Result<()> {
        Ok(())
    }

    pub async fn next(&mut self) -> anyhow::Result<Option<ServerMessage>> {
        std::future::pending().await
    }

    pub async fn close(&mut self) {}
}
