//! gRPC status → [`EngineError`]: the one place the remote engine's
//! failures get their retryability and fault.

use std::time::Duration;

use tonic::{Code, Status};

use crate::infer::error::EngineError;

/// Maps a failed call. `what` names the call and model for the message
/// (never patient data: requests carry tensors only).
pub fn engine_error(what: &str, status: &Status, deadline: Duration) -> EngineError {
    let message = format!("{what}: {} ({:?})", status.message(), status.code());
    if is_transport_failure(status) {
        return EngineError::Unavailable(message);
    }
    match status.code() {
        // Connection refused or reset, TLS failures, a server shutting down:
        // the transport reports all of these as unavailable.
        Code::Unavailable | Code::Cancelled | Code::Aborted | Code::ResourceExhausted => {
            EngineError::Unavailable(message)
        }
        Code::DeadlineExceeded => EngineError::DeadlineExceeded(deadline),
        Code::NotFound => EngineError::NotReady(message),
        // Our tensors were checked against the manifest before sending, so a
        // refusal means the served model is not the one the manifest names.
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            EngineError::ManifestMismatch(message)
        }
        Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented => {
            EngineError::Load(message)
        }
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss | Code::AlreadyExists => {
            EngineError::Execution(message)
        }
    }
}

/// A connection that broke under a request (the server went away) comes
/// back as `Unknown` with the transport error as its source.
fn is_transport_failure(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>() || error.is::<std::io::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}
