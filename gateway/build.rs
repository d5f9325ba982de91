//! Generates the KServe v2 gRPC client (`proto/kserve_v2.proto`) for the
//! `triton` engine with the vendored `protoc`, so a build needs no protoc on
//! the host and fetches nothing.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/kserve_v2.proto");
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&["proto/kserve_v2.proto"], &["proto"])?;
    Ok(())
}
