//! Generated protobuf and gRPC code for Tern's APIs. See `docs/focus-api.md`.
//!
//! Versioning: a package (`tern.focus.v1`) only ever gains fields, messages
//! and methods; anything incompatible is a new package (`v2`) served side by
//! side.

#![allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]

pub mod focus {
    pub mod v1 {
        tonic::include_proto!("tern.focus.v1");
    }
}

pub mod bridge {
    pub mod v1 {
        tonic::include_proto!("tern.bridge.v1");
    }
}

pub mod relay {
    pub mod v1 {
        tonic::include_proto!("tern.relay.v1");
    }
}
