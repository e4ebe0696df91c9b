//! `tern loadtest`: its arguments and the load tool itself live in
//! `crate::loadtest`; this file only gives the command its place in `cmd/`.

pub use crate::loadtest::Args;

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::loadtest::main(args)
}
