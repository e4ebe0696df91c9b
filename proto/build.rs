//! Compiles the .proto files with protox (pure Rust: no system protoc):
//! the messages always, the gRPC clients and servers with feature `grpc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "tern/focus/v1/focus.proto",
        "tern/bridge/v1/bridge.proto",
        "tern/relay/v1/relay.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    // A build script sees its package's features only as environment
    // variables; without `grpc` there is no tonic to compile the services
    // against, so only the messages are generated.
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_GRPC");
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .compile_fds(fds)?;
    Ok(())
}
