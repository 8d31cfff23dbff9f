//! Compiles the control-plane `.proto` (owned by this crate, not part of the platform contracts)
//! with protox, exactly as the `proto` crate compiles the service contracts.

use std::error::Error;

const PROTO_FILES: &[&str] = &["proto/mock/control/v1/control.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTO_FILES, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
