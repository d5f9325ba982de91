//! The `triton` engine: a KServe v2 gRPC client for Triton (or any server
//! speaking the protocol: KServe, MLServer), for model versions whose
//! manifest has a `[triton]` section. The model runs on the server (a
//! TensorRT plan on a GPU node, typically); the gateway keeps the manifest's
//! preprocessing and outputs, and checks the served model against the
//! manifest before it takes traffic.
//!
//! - Load: `ServerReady`, `ModelReady` (the pinned version),
//!   `ModelMetadata` against the manifest's names, datatypes and shapes,
//!   then one inference on zeros ([`TritonConfig::build`]).
//! - Inference: raw little-endian contents, the pinned version named in
//!   every request and checked in every answer, one deadline per request,
//!   one shared HTTP/2 connection per server ([`channel`]).
//! - Health: `ModelReady`, so a route's circuit breaker sees a model that
//!   the server unloaded.
//! - Errors: gRPC statuses map onto [`EngineError`] in [`status`].

mod channel;
mod codec;
mod config;
mod proto;
mod signature;
mod status;

#[cfg(test)]
mod server_tests;
#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::transport::Channel;
use tracing::Instrument;

pub use config::TritonConfig;

use super::InferenceEngine;
use super::error::EngineError;
use super::limit::{ConcurrencyLimit, EngineLimits, EngineStats};
use super::tensor::{Tensors, check_batched_inputs, check_inputs, with_batch};
use crate::models::{Manifest, TensorSpec, TritonModel};
use proto::{
    GrpcInferenceServiceClient, ModelMetadataRequest, ModelReadyRequest, ServerReadyRequest,
};

/// A model version served by a Triton (KServe v2) server.
pub struct TritonEngine {
    client: GrpcInferenceServiceClient<Channel>,
    target: TritonModel,
    /// `name@version` of the manifest, for logs and spans.
    model: String,
    url: String,
    inputs: Vec<TensorSpec>,
    outputs: Arc<[TensorSpec]>,
    dynamic_batch: bool,
    timeout: Duration,
    limit: ConcurrencyLimit,
    /// Request ids, so a server log line can be matched to a gateway one.
    next_id: AtomicU64,
}

impl std::fmt::Debug for TritonEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TritonEngine")
            .field("url", &self.url)
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .field("limits", &self.limit.limits())
            .finish_non_exhaustive()
    }
}

impl TritonEngine {
    /// The engine for `manifest` on the server `config` names. Connects
    /// lazily: call [`Self::check_deployment`] before taking traffic.
    pub fn new(manifest: &Manifest, config: &TritonConfig) -> Result<TritonEngine, EngineError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(EngineError::Load(format!(
                "invalid triton configuration: {}",
                problems.join("; ")
            )));
        }
        let target = manifest.triton.clone().ok_or_else(|| {
            EngineError::Load(format!(
                "{} has no [triton] section: the triton engine serves only models whose \
                 manifest names the model and version on the server",
                manifest.id()
            ))
        })?;
        let client = GrpcInferenceServiceClient::new(channel::channel_for(config)?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        Ok(TritonEngine {
            client,
            target,
            model: manifest.id().to_string(),
            url: config.url.clone(),
            inputs: vec![manifest.input.clone()],
            outputs: manifest.output_tensors().into(),
            dynamic_batch: manifest.dynamic_batch,
            timeout: config.timeout,
            limit: ConcurrencyLimit::new(EngineLimits {
                max_concurrent: config.max_concurrent,
                max_queued: config.max_queued,
            }),
            next_id: AtomicU64::new(1),
        })
    }

    /// The model and version on the server.
    pub fn target(&self) -> &TritonModel {
        &self.target
    }

    /// Server ready, the pinned model version ready, and its metadata
    /// agreeing with the manifest; each a typed error otherwise.
    pub async fn check_deployment(&self) -> Result<(), EngineError> {
        let ready = self
            .call(
                "ServerReady",
                |mut c, r| async move { c.server_ready(r).await },
                ServerReadyRequest {},
            )
            .await?;
        if !ready.ready {
            return Err(EngineError::Unavailable(format!(
                "triton server {} is not ready",
                self.url
            )));
        }
        self.model_ready().await?;
        let metadata = self
            .call(
                "ModelMetadata",
                |mut c, r| async move { c.model_metadata(r).await },
                ModelMetadataRequest {
                    name: self.target.model.clone(),
                    version: self.target.version.clone(),
                },
            )
            .await?;
        signature::check_metadata(
            &metadata,
            &self.target,
            &self.inputs,
            &self.outputs,
            self.dynamic_batch,
        )?;
        tracing::info!(
            model = %self.model,
            url = %self.url,
            triton_model = %self.target.model,
            triton_version = %self.target.version,
            platform = %metadata.platform,
            "triton model ready and matches its manifest"
        );
        Ok(())
    }

    async fn model_ready(&self) -> Result<(), EngineError> {
        let ready = self
            .call(
                "ModelReady",
                |mut c, r| async move { c.model_ready(r).await },
                ModelReadyRequest {
                    name: self.target.model.clone(),
                    version: self.target.version.clone(),
                },
            )
            .await?;
        if ready.ready {
            Ok(())
        } else {
            Err(EngineError::NotReady(format!(
                "`{}` version {} on {} says it is not ready",
                self.target.model, self.target.version, self.url
            )))
        }
    }

    /// One unary call with the deadline, both enforced here and sent as
    /// `grpc-timeout` so the server stops working on an abandoned request.
    async fn call<Req, Resp, F, Fut>(
        &self,
        what: &str,
        send: F,
        message: Req,
    ) -> Result<Resp, EngineError>
    where
        F: FnOnce(GrpcInferenceServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(self.timeout, send(self.client.clone(), request)).await {
            Err(_elapsed) => Err(EngineError::DeadlineExceeded(self.timeout)),
            // tonic enforces `grpc-timeout` on its side too, and reports it
            // as a cancellation: past the deadline, any failure is the deadline.
            Ok(Err(_)) if started.elapsed() >= self.timeout => {
                Err(EngineError::DeadlineExceeded(self.timeout))
            }
            Ok(Err(status)) => Err(status::engine_error(
                &format!("{what} `{}` on {}", self.target.model, self.url),
                &status,
                self.timeout,
            )),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    async fn run(&self, inputs: Tensors, batch: Option<usize>) -> Result<Tensors, EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let request =
            codec::encode_request(&self.target, id, &self.inputs, &inputs, &self.outputs)?;
        drop(inputs);
        let response = self
            .call(
                "ModelInfer",
                |mut c, r| async move { c.model_infer(r).await },
                request,
            )
            .await?;
        let expected: Vec<TensorSpec> = match batch {
            Some(batch) => self.outputs.iter().map(|s| with_batch(s, batch)).collect(),
            None => self.outputs.to_vec(),
        };
        codec::decode_response(&self.target, response, &expected)
    }
}

impl InferenceEngine for TritonEngine {
    fn kind(&self) -> &'static str {
        "triton"
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn infer(&self, inputs: Tensors) -> BoxFuture<'_, Result<Tensors, EngineError>> {
        Box::pin(async move {
            let batch = if self.dynamic_batch {
                Some(check_batched_inputs(&self.inputs, &inputs)?)
            } else {
                check_inputs(&self.inputs, &inputs)?;
                None
            };
            let span = tracing::debug_span!(
                "triton_infer",
                engine = "triton",
                model = %self.model,
                triton_model = %self.target.model,
                triton_version = %self.target.version,
                batch = batch.unwrap_or(1),
            );
            self.limit
                .run(self.run(inputs, batch))
                .instrument(span)
                .await
        })
    }

    /// `ModelReady` for the pinned version: the server may unload a model
    /// (or lose its GPU) long after the gateway loaded it.
    fn health(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(self.model_ready())
    }

    fn stats(&self) -> EngineStats {
        self.limit.stats()
    }
}
