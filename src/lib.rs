//! The `tern` binary's library: the tokio shells around the Sans-IO cores,
//! configuration, authentication and the command line.

pub mod auth;
pub mod bridge;
pub mod client;
pub mod cmd;
pub mod config;
pub mod focus;
pub mod loadtest;
pub mod relay_net;
