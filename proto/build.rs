//! Compiles the .proto files with protox (pure Rust: no system protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "tern/focus/v1/focus.proto",
        "tern/bridge/v1/bridge.proto",
        "tern/relay/v1/relay.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
