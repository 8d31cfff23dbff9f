//! Compiles the `.proto` files with protox (pure Rust, no system `protoc`), writes the encoded
//! descriptor set for the gateway's data-driven routing, and generates tonic clients and servers.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTO_FILES: &[&str] = &[
    "proto/auth/v1/auth.proto",
    "proto/project/v1/project.proto",
    "proto/simulation/v1/simulation.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTO_FILES, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
