//! The attempt chain of one job: each of the plan's models in turn (loaded
//! from the `ModelCache`, behind its engine's circuit breaker, under the
//! attempt timeout) runs on every source image, with the result cache
//! consulted per image, until one answers or all are given up. What to
//! try is `chain::Plan`'s; what to do with the outcome is `finish`'s.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chain::{AttemptResult, ChainOutcome, GivenUp, Plan, Scored, publish_circuit, record};
use super::error::JobError;
use super::model_cache::ModelCache;
use super::queue::Job;
use crate::assemble::SeriesInstance;
use crate::cache::ResultCache;
use crate::infer::{AttemptError, CircuitRegistry, Classification, EngineError, LoadedModel};
use crate::models::PerImage;
use crate::pixels::{PixelError, catch_decoder_panic, image_to_tensor, open_stored};
use crate::telemetry::PipelineMetrics;
use crate::telemetry::drift::{AcquisitionParams, InputStats};

/// What an attempt needs: the models in service, their circuits, the
/// result cache, the data directory the source paths are relative to,
/// and the pipeline metrics it counts into.
pub(super) struct Attempts<'a> {
    pub models: &'a ModelCache,
    pub circuits: &'a CircuitRegistry,
    pub cache: &'a ResultCache,
    pub data_dir: &'a Path,
    pub metrics: &'a PipelineMetrics,
}

impl Attempts<'_> {
    /// Tries the plan's models in order until one answers. A model that
    /// cannot load, is refused by its open circuit, fails or overruns the
    /// timeout is given up for the next. An image that cannot be read ends
    /// the job: no other model would read it better.
    pub async fn run_chain(
        &self,
        job: &Job,
        plan: &Plan,
        sources: &[SeriesInstance],
    ) -> Result<ChainOutcome, JobError> {
        let mut given_up = Vec::new();
        for (index, id) in plan.models.iter().enumerate() {
            if index == 0
                && let Some(reason) = &plan.forced
            {
                let detail = format!("fallback forced by an operator: {reason}");
                given_up.push(GivenUp::new(id, index, "forced", detail));
                continue;
            }
            let model = match self.models.get(id).await {
                Ok(model) => model,
                Err(e) => {
                    given_up.push(GivenUp::new(id, index, "model_unavailable", e.to_string()));
                    continue;
                }
            };
            if model.manifest().per_image != PerImage::TwoD {
                let detail = "volume models are not run by the pipeline yet".to_string();
                given_up.push(GivenUp::new(id, index, "unsupported", detail));
                continue;
            }
            let breaker = self.circuits.breaker(model.engine_kind(), id);
            let attempt = match breaker.try_acquire() {
                Err(open) => AttemptResult::GaveUp(AttemptError::CircuitOpen(open)),
                Ok(permit) => {
                    let call = self.classify_all(job, &model, sources);
                    let outcome = match tokio::time::timeout(plan.timeout, call).await {
                        Ok(Ok(scored)) => AttemptResult::Answered(scored),
                        Ok(Err(JobError::Engine(e))) => AttemptResult::GaveUp(e.into()),
                        // Neither the engine's success nor its failure.
                        Ok(Err(other)) => return Err(other),
                        Err(_) => AttemptResult::GaveUp(AttemptError::Timeout(plan.timeout)),
                    };
                    record(permit, &outcome);
                    outcome
                }
            };
            publish_circuit(
                &self.metrics.circuit_state,
                model.engine_kind(),
                id,
                &breaker,
            );
            match attempt {
                AttemptResult::Answered(scored) => {
                    self.count_given_up(job, &given_up);
                    return Ok(ChainOutcome::Served {
                        index,
                        model,
                        scored,
                        given_up,
                    });
                }
                AttemptResult::GaveUp(error) => {
                    tracing::warn!(model = %id, reason = error.reason(), error = %error, "model given up");
                    given_up.push(GivenUp::from_attempt(id, index, &error));
                }
            }
        }
        self.count_given_up(job, &given_up);
        Ok(ChainOutcome::Exhausted { given_up })
    }

    fn count_given_up(&self, job: &Job, given_up: &[GivenUp]) {
        for step in given_up {
            self.metrics
                .fallbacks
                .with_label_values(&[job.route.as_str(), step.reason, step.step()])
                .inc();
        }
    }

    /// Runs the model on every source image; a series' score per label is
    /// the highest of its images' (any positive slice makes it positive).
    /// An image whose input tensor this model version has already scored
    /// takes the cached scores instead of an inference. A score that is
    /// not a finite number is the engine's failure: no result may rest on
    /// it, and it is never cached.
    async fn classify_all(
        &self,
        job: &Job,
        model: &LoadedModel,
        sources: &[SeriesInstance],
    ) -> Result<Scored, JobError> {
        let id = model.id();
        let version = id.version.to_string();
        let cache = self.cache;
        let fingerprint = crate::cache::ModelFingerprint::of(model.manifest());
        let mut combined: Option<Classification> = None;
        let mut all_cached = true;
        let mut inference = Duration::ZERO;
        let mut acquisition: Option<AcquisitionParams> = None;
        let mut inputs: Vec<InputStats> = Vec::new();
        for (index, source) in sources.iter().enumerate() {
            let path = self.data_dir.join(&source.path);
            let manifest = Arc::clone(model.manifest());
            let hash_input = cache.is_enabled();
            let first = acquisition.is_none();
            // The task boundary of the pixel pipeline: a decoder panic is
            // caught here and fails this image like any other bad image.
            let (tensor, input, params, stats) = tokio::task::spawn_blocking(move || {
                catch_decoder_panic(|| {
                    let object = open_stored(&path)?;
                    let tensor =
                        image_to_tensor(&object, 0, &manifest.preprocessing, &manifest.input)?;
                    let input = hash_input.then(|| {
                        crate::cache::InputDigest::of_tensor(&manifest.input.name, &tensor)
                    });
                    let params = first.then(|| AcquisitionParams::from_object(&object));
                    let stats = InputStats::of_tensor(&tensor);
                    Ok::<_, PixelError>((tensor, input, params, stats))
                })
            })
            .await
            .map_err(|e| JobError::Internal(format!("pixel task: {e}")))?
            .map_err(|error| JobError::BadImage {
                position: index + 1,
                count: sources.len(),
                error,
            })?;
            if let Some(params) = params {
                acquisition = Some(params);
            }
            inputs.extend(stats);
            let key = input.map(|input| fingerprint.key(&input));
            let cached = match &key {
                Some(key) => cache.get(key).await,
                None => None,
            };
            let classification = match cached {
                Some(hit) => hit.classification,
                None => {
                    all_cached = false;
                    let started = Instant::now();
                    let result = model.classify(tensor).await.and_then(|c| {
                        match c.labels.iter().find(|l| !l.score.is_finite()) {
                            Some(bad) => Err(EngineError::Execution(format!(
                                "output `{}` gave a score that is not a finite number for label `{}`",
                                bad.output, bad.label
                            ))),
                            None => Ok(c),
                        }
                    });
                    let outcome = if result.is_ok() { "ok" } else { "error" };
                    self.metrics
                        .inference_seconds
                        .with_label_values(&[&job.route, &id.name, &version, outcome])
                        .observe(started.elapsed().as_secs_f64());
                    inference += started.elapsed();
                    let classification = result?;
                    if let Some(key) = &key {
                        let value = crate::cache::CachedResult::new(
                            key,
                            classification.clone(),
                            model.engine_kind(),
                        );
                        cache.put(key, &value).await;
                    }
                    classification
                }
            };
            combined = Some(match combined {
                None => classification,
                Some(so_far) => max_per_label(so_far, classification),
            });
        }
        Ok(Scored {
            classification: combined.ok_or(JobError::SourceGone)?,
            all_cached,
            inference,
            acquisition: acquisition.unwrap_or_default(),
            input: InputStats::mean_of(&inputs),
        })
    }
}

fn max_per_label(mut so_far: Classification, next: Classification) -> Classification {
    for (kept, new) in so_far.labels.iter_mut().zip(next.labels) {
        if new.score > kept.score {
            *kept = new;
        }
    }
    so_far
}
