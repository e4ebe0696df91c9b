//! `tern loadtest`: the load tool lives in the `tern-loadtest` crate; this
//! binds it to the binary's token format, the one part of the bridge it
//! needs (`--secret` mints tokens the bridge's `auth` accepts).

pub use tern_loadtest::Args;

/// How long a token minted with `--secret` stays valid: an hour, the
/// longest `--duration` (a participant presents it once, when it joins).
const TOKEN_TTL_SECS: u64 = 3600;

pub fn main(args: Args) -> anyhow::Result<()> {
    Ok(tern_loadtest::main(args, mint)?)
}

fn mint(secret: &str, room: &str, participant: &str) -> String {
    crate::auth::TokenKeys::new(secret).mint(room, participant, Some(participant), TOKEN_TTL_SECS)
}
