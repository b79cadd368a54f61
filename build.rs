//! Hands the Temporal API's protobuf descriptor set (written by `temporalio-protos`' build
//! script, which announces it through its `links` metadata) to `src/replay.rs`, which reads
//! histories in proto-JSON, the format `temporal workflow show --output json` writes.

fn main() {
    let path = std::env::var("DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH")
        .expect("temporalio-protos announces its descriptor set (links = temporalio_protos)");
    println!("cargo:rustc-env=CHANGEFLOW_TEMPORAL_DESCRIPTORS={path}");
    println!("cargo:rerun-if-changed={path}");
    println!("cargo:rerun-if-env-changed=DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH");
}
