//! Compiles Cairn's copies of etcd's .proto files without a system `protoc`:
//! `protox` (pure Rust) parses them into a FileDescriptorSet, and
//! madsim-tonic-build generates both the real tonic code and the madsim
//! simulated code (under `$OUT_DIR/sim`) from that set.

use std::path::PathBuf;

use prost::Message;

/// The proto files, relative to the crate root; imports resolve against `proto/`.
const PROTO_FILES: [&str; 6] = [
    "proto/kv.proto",
    "proto/auth.proto",
    "proto/rpc.proto",
    "proto/v3lock.proto",
    "proto/v3election.proto",
    "proto/health.proto",
];
const PROTO_INCLUDE_DIR: &str = "proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("cairn_descriptor_set.bin");

    let descriptor_set = protox::compile(PROTO_FILES, [PROTO_INCLUDE_DIR])?;
    std::fs::write(&descriptor_path, descriptor_set.encode_to_vec())?;

    tonic_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .build_client(true)
        .build_server(true)
        .compile_protos(&PROTO_FILES, &[PROTO_INCLUDE_DIR])?;

    println!("cargo:rerun-if-changed={PROTO_INCLUDE_DIR}");
    Ok(())
}
