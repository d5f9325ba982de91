//! The KServe v2 messages and client generated from `proto/kserve_v2.proto`
//! by `build.rs` (tonic-prost-build, vendored protoc).

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("inference");

pub use grpc_inference_service_client::GrpcInferenceServiceClient;
