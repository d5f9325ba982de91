//! The one acceptance path. A C-STORE data set, a STOW-RS part and a result
//! object the gateway made itself all end here, in the same order:
//! finish (fsync) → validate and parse the header → check against what the
//! protocol announced → commit → ingest metrics. Only an `Ok` from
//! [`Store::accept`] may become a Success for the sender.

use std::time::Instant;

use super::uid::validate_uid;
use super::{
    CommitOutcome, GENERATED_PROTOCOL, IndexedAttributes, Provenance, StagedFile, StagingFile,
    Store, StoreError, StoredInstance, parse_header,
};
use crate::telemetry::modality_label;

/// What the protocol said about an instance before its data set arrived:
/// the C-STORE command, the STOW-RS part's file meta (and the study in the
/// request path), or the file meta of an object we made.
#[derive(Debug, Clone)]
pub struct Announced {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The study a STOW-RS request addressed (`POST /studies/{study}`).
    pub study_instance_uid: Option<String>,
    /// Where the announcement came from, for error messages: "command",
    /// "file meta information".
    pub source: &'static str,
}

/// A durable, indexed instance and the attributes its sender needs back.
#[derive(Debug, Clone)]
pub struct AcceptedInstance {
    pub stored: StoredInstance,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
}

impl Store {
    /// Takes a received instance through every check and into the store.
    /// A refusal removes the temp file, is counted under its reason, and
    /// names the fault in its message; nothing is half-stored.
    pub async fn accept(
        &self,
        staging: StagingFile,
        announced: &Announced,
        provenance: Provenance,
    ) -> Result<AcceptedInstance, StoreError> {
        let received_at = Instant::now();
        let staged = staging.finish().await;
        let checked = match staged {
            Ok(staged) => self.check(staged, announced, &provenance).await,
            Err(e) => Err(e),
        };
        let attributes = match checked {
            Ok(attributes) => attributes,
            Err(e) => {
                self.count_refusal(&provenance.site, e.as_label());
                return Err(e);
            }
        };
        let (staged, attributes) = attributes;
        let labels = IngestLabels::of(self, &provenance, &attributes);
        let accepted = AcceptedInstance::identified_by(&attributes);
        match self
            .commit(staged, attributes, provenance, received_at)
            .await
        {
            Ok(stored) => {
                labels.count_stored(self, &stored);
                tracing::debug!(
                    outcome = ?stored.outcome,
                    bytes = stored.file_size,
                    modality = labels.modality,
                    protocol = labels.protocol,
                    accept_us = received_at.elapsed().as_micros() as u64,
                    "instance stored"
                );
                Ok(AcceptedInstance { stored, ..accepted })
            }
            Err(e) => {
                self.count_refusal(&labels.site, e.as_label());
                Err(e)
            }
        }
    }

    /// Counts an instance refused before it reached [`Store::accept`] (a
    /// bad command or part header), under the same metric as the rest.
    pub fn count_refusal(&self, site: &str, reason: &str) {
        self.inner
            .metrics
            .ingest_failures
            .with_label_values(&[site, reason])
            .inc();
    }

    /// Validates and parses the staged file off the async threads, then
    /// checks it against the announcement. On refusal the file is gone.
    async fn check(
        &self,
        staged: StagedFile,
        announced: &Announced,
        provenance: &Provenance,
    ) -> Result<(StagedFile, IndexedAttributes), StoreError> {
        let transfer_syntax = provenance.transfer_syntax_uid.clone();
        let limits = self.limits(staged.max_dataset_bytes);
        let (parsed, staged) = tokio::task::spawn_blocking(move || {
            // A dependency that panics on these bytes costs this object only.
            let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                parse_header(&staged, &transfer_syntax, &limits)
            }))
            .unwrap_or_else(|_| {
                Err(StoreError::Unreadable(
                    "the data set header parser failed on this object".into(),
                ))
            });
            (parsed, staged)
        })
        .await
        .map_err(|e| StoreError::Commit(format!("header task: {e}")))?;
        match parsed.and_then(|a| check_announced(a, announced)) {
            Ok(attributes) => Ok((staged, attributes)),
            Err(e) => {
                remove_staged(&staged).await;
                Err(e)
            }
        }
    }
}

impl AcceptedInstance {
    fn identified_by(attributes: &IndexedAttributes) -> Self {
        Self {
            stored: StoredInstance {
                outcome: CommitOutcome::Stored,
                path: Default::default(),
                sha256: String::new(),
                file_size: 0,
            },
            sop_class_uid: attributes.sop_class_uid.clone(),
            sop_instance_uid: attributes.sop_instance_uid.clone(),
            study_instance_uid: attributes.study_instance_uid.clone(),
            series_instance_uid: attributes.series_instance_uid.clone(),
        }
    }
}

/// The bounded labels an accepted instance is counted under.
struct IngestLabels {
    site: String,
    protocol: &'static str,
    modality: &'static str,
    scanner: std::sync::Arc<str>,
}

impl IngestLabels {
    fn of(store: &Store, provenance: &Provenance, attributes: &IndexedAttributes) -> Self {
        Self {
            site: provenance.site.clone(),
            protocol: provenance.protocol,
            modality: modality_label(attributes.modality.as_deref()),
            scanner: store.inner.metrics.performance.scanner_label(
                attributes.manufacturer.as_deref(),
                attributes.manufacturer_model_name.as_deref(),
            ),
        }
    }

    /// Received instances and bytes per site; a re-send of what we hold,
    /// and the objects we make ourselves, are not new arrivals.
    fn count_stored(&self, store: &Store, stored: &StoredInstance) {
        if stored.outcome == CommitOutcome::AlreadyStored || self.protocol == GENERATED_PROTOCOL {
            return;
        }
        let metrics = &store.inner.metrics;
        let labels = [self.site.as_str(), self.modality, self.protocol];
        metrics.ingest_instances.with_label_values(&labels).inc();
        metrics
            .ingest_bytes
            .with_label_values(&labels)
            .inc_by(stored.file_size);
        metrics.performance.record_received(
            &self.site,
            self.modality,
            &self.scanner,
            stored.file_size,
        );
    }
}

/// The data set must be the instance the protocol announced, with the
/// identifiers the index and the pipeline key on (PS3.4 B.2.3: 0xA900).
fn check_announced(
    attributes: IndexedAttributes,
    announced: &Announced,
) -> Result<IndexedAttributes, StoreError> {
    // Garbage can parse as a few odd elements: with neither SOP UID it is
    // not a data set we understand at all (0xC000, not 0xA900).
    if attributes.sop_class_uid.is_empty() && attributes.sop_instance_uid.is_empty() {
        return Err(StoreError::NoSopUids);
    }
    let source = announced.source;
    let mismatch = if attributes.sop_class_uid != announced.sop_class_uid {
        format!("data set SOP Class UID differs from the {source}")
    } else if attributes.sop_instance_uid != announced.sop_instance_uid {
        format!("data set SOP Instance UID differs from the {source}")
    } else if validate_uid(&attributes.study_instance_uid).is_err() {
        "data set lacks a valid Study Instance UID".into()
    } else if validate_uid(&attributes.series_instance_uid).is_err() {
        "data set lacks a valid Series Instance UID".into()
    } else if announced
        .study_instance_uid
        .as_ref()
        .is_some_and(|study| *study != attributes.study_instance_uid)
    {
        "instance belongs to another study than the one in the request path".into()
    } else {
        return Ok(attributes);
    };
    Err(StoreError::Mismatch(mismatch))
}

async fn remove_staged(staged: &StagedFile) {
    if let Err(e) = tokio::fs::remove_file(&staged.path).await {
        tracing::warn!(error = %e, "cannot remove refused temp file");
    }
}
