//! Compiles Keel's own protos with protox (no protoc needed) and generates the server traits
//! of Temporal's WorkflowService and OperatorService from the descriptor set that the
//! `temporalio-protos` crate exports (no Temporal protos are vendored).

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "keel/raft/v1/raft.proto",
        "keel/admin/v1/admin.proto",
        "keel/kv/v1/kv.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    // Reflection serves this descriptor set.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("keel_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // Ordered maps: encoded bytes must not depend on hash-map iteration order, because
        // replicated state (e.g. membership) is stored in this encoding and digested.
        .btree_map(".")
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;

    // Temporal: server stubs only; every message type is `temporalio_protos`'s own.
    println!("cargo:rerun-if-env-changed=DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH");
    let raw = std::fs::read(std::env::var("DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH")?)?;
    // The exported set went through prost-types, which drops extension options, so the
    // `google.api.http` annotations the HTTP API is routed by are recompiled, with full
    // fidelity, from the dependency's own .proto files.
    std::fs::write(
        out.join("temporal_descriptor.bin"),
        temporal_services_with_options()?,
    )?;
    let mut set = prost_types::FileDescriptorSet::decode(raw.as_slice())?;
    let keep = [
        "temporal/api/workflowservice/v1/service.proto",
        "temporal/api/operatorservice/v1/service.proto",
    ];
    set.file.retain(|f| keep.contains(&f.name()));
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .generate_default_stubs(true) // RPCs Keel does not implement answer UNIMPLEMENTED
        .extern_path(".temporal", "::temporalio_protos::temporal")
        .compile_fds(set)?;
    Ok(())
}

/// Temporal's two services (and everything they import) compiled from the `temporalio-protos`
/// crate's sources, options included.
fn temporal_services_with_options() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let cargo = std::env::var("CARGO")?;
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let target = std::env::var("TARGET")?;
    // Only this platform's packages: on a cold machine the registry holds just what the build
    // downloaded, and resolving every platform's (e.g. Android-only crates) offline fails. If
    // even those are not all there (a build of one package), let cargo fetch them.
    let metadata = |offline: bool| {
        let mut cmd = std::process::Command::new(&cargo);
        cmd.args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &target,
        ])
        .current_dir(&manifest_dir);
        if offline {
            cmd.arg("--offline");
        }
        cmd.output()
    };
    let mut meta = metadata(true)?;
    if !meta.status.success() {
        meta = metadata(false)?;
    }
    if !meta.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&meta.stderr)
        )
        .into());
    }
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout)?;
    let manifest = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "temporalio-protos")
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("temporalio-protos is not among the dependencies")?;
    let protos = PathBuf::from(manifest)
        .parent()
        .ok_or("a manifest path has a parent")?
        .join("protos");
    println!("cargo:rerun-if-changed={}", protos.display());
    let mut compiler = protox::Compiler::new([protos.join("api_upstream"), protos.clone()])?;
    compiler.include_imports(true);
    compiler.open_files([
        "temporal/api/workflowservice/v1/service.proto",
        "temporal/api/operatorservice/v1/service.proto",
        // The typed details of errors, and the status that carries them.
        "temporal/api/errordetails/v1/message.proto",
        "google/rpc/status.proto",
    ])?;
    Ok(compiler.encode_file_descriptor_set())
}
