//! Generated protobuf and gRPC code for Tern's APIs. See `docs/focus-api.md`.
//!
//! The message types are always here; the tonic clients and servers
//! (`focus_client`, `bridge_control_server`, …) only with feature `grpc`,
//! so a Sans-IO crate can use the messages without an async runtime.
//!
//! Versioning: a package (`tern.focus.v1`) only ever gains fields, messages
//! and methods; anything incompatible is a new package (`v2`) served side by
//! side.

#![allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]

pub mod focus {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tern.focus.v1.rs"));
    }
}

pub mod bridge {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tern.bridge.v1.rs"));
    }
}

pub mod relay {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tern.relay.v1.rs"));
    }
}
