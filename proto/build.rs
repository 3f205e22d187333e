//! Generates the berth.v1 messages and services from `berth/v1/*.proto` with the system's
//! `protoc` (Debian's protobuf-compiler), or the one `PROTOC` names.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "berth/v1/types.proto",
        "berth/v1/agent.proto",
        "berth/v1/services.proto",
        "berth/v1/control.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Secret values: their Debug is written by hand in lib.rs and shows no value.
        .skip_debug(["berth.v1.SecretValue", "berth.v1.CreateSecretRequest"])
        .compile_protos(&protos, &["."])?;
    Ok(())
}
