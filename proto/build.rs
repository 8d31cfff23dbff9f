//! Compiles the `.proto` files with protox (pure Rust, no system `protoc`), writes the encoded
//! descriptor set for the gateway's data-driven routing, and generates tonic clients and servers.

use std::{env, fs, path::PathBuf};

const PROTO_FILES: &[&str] = &[
    "proto/auth/v1/auth.proto",
    "proto/project/v1/project.proto",
    "proto/simulation/v1/simulation.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).open_files(PROTO_FILES)?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // Encoded through the compiler's own pool, so method options (the `google.api.http`
    // extension) survive: prost-types' option structs would drop extension fields.
    fs::write(
        out_dir.join("descriptors.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let descriptors = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
