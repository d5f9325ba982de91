//! A load run: pre-encoded instances spread over parallel associations,
//! with every acknowledgement recorded for the report.
//!
//! Generation and encoding happen before the clock starts (see
//! [`prepare_series`]), so the figures measure the peer and the network,
//! not our generator.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use crate::scu::{ScuError, ScuOptions, StoreAck, StoreClient};
use crate::synth::{SeriesGenerator, SeriesSpec, SynthError, transcode_dataset};

/// One instance ready to send: its command UIDs and encoded data set.
#[derive(Debug, Clone)]
pub struct PreparedInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The transfer syntax `dataset` is encoded in.
    pub transfer_syntax: String,
    pub dataset: Vec<u8>,
}

/// Generate and encode every instance of `specs` in `transfer_syntax`.
///
/// Instances are encoded one at a time and their in-memory data sets
/// dropped, so memory holds one copy of the encoded bytes, not two.
pub fn prepare_series(
    specs: &[SeriesSpec],
    transfer_syntax: &str,
) -> Result<Vec<PreparedInstance>, SynthError> {
    let total = specs.iter().map(|spec| spec.instances).sum();
    let mut prepared = Vec::with_capacity(total);
    for spec in specs {
        for inst in SeriesGenerator::new(spec) {
            prepared.push(PreparedInstance {
                dataset: inst.encode_dataset(transfer_syntax)?,
                transfer_syntax: transfer_syntax.to_string(),
                sop_class_uid: inst.sop_class_uid,
                sop_instance_uid: inst.sop_instance_uid,
            });
        }
    }
    Ok(prepared)
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct StoreRunConfig {
    pub addr: SocketAddr,
    pub scu: ScuOptions,
    /// Parallel associations; instances are split into contiguous runs,
    /// one per association, as several modalities sending at once would.
    pub associations: usize,
}

/// What happened to one instance.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub dataset_bytes: usize,
    pub outcome: InstanceResult,
}

#[derive(Debug, Clone)]
pub enum InstanceResult {
    /// The peer answered with a C-STORE-RSP (of any status).
    Acked(StoreAck),
    /// No response: the association failed before or during the exchange.
    Failed {
        /// [`ScuError::kind`], a bounded label for grouping.
        kind: &'static str,
        message: String,
    },
}

/// Everything a report needs.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// One record per prepared instance, in the order they were given.
    pub results: Vec<InstanceRecord>,
    pub elapsed: Duration,
    pub associations: usize,
}

/// How many times a worker re-establishes a failed association before
/// giving up on the rest of its instances.
const MAX_RECONNECTS: usize = 3;

/// Send every instance over `config.associations` parallel associations,
/// ticking `progress` once per instance.
///
/// The first association is established before the clock starts: it tells
/// which transfer syntax the peer accepted, so any transcoding happens
/// untimed, and it then serves as the first worker's association.
pub async fn run_store(
    config: &StoreRunConfig,
    instances: Vec<PreparedInstance>,
    progress: ProgressBar,
) -> RunOutcome {
    let associations = config.associations.clamp(1, instances.len().max(1));
    let mut sop_classes: Vec<String> = Vec::new();
    for inst in &instances {
        if !sop_classes.contains(&inst.sop_class_uid) {
            sop_classes.push(inst.sop_class_uid.clone());
        }
    }
    let class_refs: Vec<&str> = sop_classes.iter().map(String::as_str).collect();
    // A failed probe is not fatal here: the worker retries and records why.
    let mut first_client = StoreClient::connect(config.addr, &config.scu, &class_refs)
        .await
        .ok();
    let instances = match &first_client {
        Some(client) => match_negotiated_syntaxes(client, instances),
        None => instances,
    };
    let instances = Arc::new(instances);
    let sop_classes = Arc::new(sop_classes);

    let started = Instant::now();
    let mut workers = Vec::with_capacity(associations);
    for range in split(instances.len(), associations) {
        let worker = Worker {
            addr: config.addr,
            options: config.scu.clone(),
            sop_classes: Arc::clone(&sop_classes),
            instances: Arc::clone(&instances),
            range: range.clone(),
            progress: progress.clone(),
        };
        workers.push((range, tokio::spawn(worker.run(first_client.take()))));
    }
    if let Some(unused) = first_client {
        let _ = unused.release().await;
    }
    let mut results = Vec::with_capacity(instances.len());
    for (range, handle) in workers {
        match handle.await {
            Ok(records) => results.extend(records),
            // A panicking worker must not hide its instances from the report.
            Err(join_error) => results.extend(range.map(|i| InstanceRecord {
                dataset_bytes: instances[i].dataset.len(),
                outcome: InstanceResult::Failed {
                    kind: "worker panic",
                    message: join_error.to_string(),
                },
            })),
        }
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    RunOutcome {
        results,
        elapsed,
        associations,
    }
}

/// Re-encode instances whose prepared syntax the peer did not accept.
///
/// Runs inline: the clock has not started and no other task is busy yet.
/// Instances that fail to transcode are left as they are; the worker tries
/// again when sending and reports the error against that instance.
fn match_negotiated_syntaxes(
    client: &StoreClient,
    mut instances: Vec<PreparedInstance>,
) -> Vec<PreparedInstance> {
    for inst in &mut instances {
        let Some(ts) = client.transfer_syntax_for(&inst.sop_class_uid) else {
            continue;
        };
        if ts == inst.transfer_syntax {
            continue;
        }
        if let Ok(dataset) = transcode_dataset(&inst.dataset, &inst.transfer_syntax, ts) {
            inst.dataset = dataset;
            inst.transfer_syntax = ts.to_string();
        }
    }
    instances
}

/// Split `0..len` into `parts` contiguous ranges whose sizes differ by at most one.
fn split(len: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    (0..parts)
        .map(|k| (k * len / parts)..((k + 1) * len / parts))
        .filter(|range| !range.is_empty())
        .collect()
}

/// One association's share of the run.
struct Worker {
    addr: SocketAddr,
    options: ScuOptions,
    sop_classes: Arc<Vec<String>>,
    instances: Arc<Vec<PreparedInstance>>,
    range: Range<usize>,
    progress: ProgressBar,
}

impl Worker {
    /// Send this share, starting on `client` if one is already open.
    async fn run(self, mut client: Option<StoreClient>) -> Vec<InstanceRecord> {
        let mut records = Vec::with_capacity(self.range.len());
        let mut reconnects = 0;
        for index in self.range.clone() {
            let inst = &self.instances[index];
            let active = match client.as_mut() {
                Some(active) => active,
                None => match self.connect().await {
                    Ok(fresh) => client.insert(fresh),
                    Err(error) => {
                        // The peer refuses us: the rest of this share cannot be sent.
                        self.fail_rest(&mut records, &error);
                        return records;
                    }
                },
            };
            let outcome = store(active, inst).await;
            // Only an encoding failure leaves nothing half-sent on the wire.
            let association_broken =
                matches!(&outcome, Err(e) if !matches!(e, ScuError::Encode(_)));
            records.push(match outcome {
                Ok(ack) => InstanceRecord {
                    dataset_bytes: inst.dataset.len(),
                    outcome: InstanceResult::Acked(ack),
                },
                Err(error) => failed(inst.dataset.len(), &error),
            });
            self.progress.inc(1);
            if association_broken {
                if let Some(broken) = client.take() {
                    // The client knows it is unusable, so this aborts.
                    let _ = broken.release().await;
                }
                reconnects += 1;
                if reconnects > MAX_RECONNECTS {
                    self.fail_rest(&mut records, &ScuError::Unusable);
                    return records;
                }
            }
        }
        if let Some(client) = client {
            // Every instance already has its answer; a failed release
            // changes nothing the report measures.
            let _ = client.release().await;
        }
        records
    }

    /// Record every instance of this share not yet attempted as failed.
    fn fail_rest(&self, records: &mut Vec<InstanceRecord>, error: &ScuError) {
        let rest = (self.range.start + records.len())..self.range.end;
        self.progress.inc(rest.len() as u64);
        records.extend(rest.map(|i| failed(self.instances[i].dataset.len(), error)));
    }

    async fn connect(&self) -> Result<StoreClient, ScuError> {
        let classes: Vec<&str> = self.sop_classes.iter().map(String::as_str).collect();
        StoreClient::connect(self.addr, &self.options, &classes).await
    }
}

/// Store one prepared instance, transcoding only if the peer accepted a
/// different transfer syntax than the one it was prepared in.
async fn store(client: &mut StoreClient, inst: &PreparedInstance) -> Result<StoreAck, ScuError> {
    let negotiated = client
        .transfer_syntax_for(&inst.sop_class_uid)
        .ok_or_else(|| ScuError::NoPresentationContext {
            sop_class_uid: inst.sop_class_uid.clone(),
        })?
        .to_string();
    let dataset: Cow<'_, [u8]> = if negotiated == inst.transfer_syntax {
        Cow::Borrowed(&inst.dataset)
    } else {
        Cow::Owned(transcode_dataset(
            &inst.dataset,
            &inst.transfer_syntax,
            &negotiated,
        )?)
    };
    client
        .store_raw(&inst.sop_class_uid, &inst.sop_instance_uid, &dataset)
        .await
}

fn failed(dataset_bytes: usize, error: &ScuError) -> InstanceRecord {
    InstanceRecord {
        dataset_bytes,
        outcome: InstanceResult::Failed {
            kind: error.kind(),
            message: error_chain(error),
        },
    }
}

/// The error and its causes on one line: "i/o error while trying to
/// establish association: Connection refused (os error 111)".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything_in_order() {
        assert_eq!(split(10, 3), vec![0..3, 3..6, 6..10]);
        assert_eq!(split(2, 4), vec![0..1, 1..2]);
        assert_eq!(split(0, 2), Vec::<Range<usize>>::new());
        assert_eq!(split(5, 0), vec![0..5]);
    }

    #[test]
    fn prepared_instances_are_encoded_in_the_requested_syntax() {
        let spec = SeriesSpec {
            rows: 16,
            columns: 16,
            ..SeriesSpec::mr_brain(2, 1)
        };
        let prepared = prepare_series(&[spec], "1.2.840.10008.1.2.1").expect("encodes");
        assert_eq!(prepared.len(), 2);
        assert!(
            prepared
                .iter()
                .all(|p| p.transfer_syntax == "1.2.840.10008.1.2.1")
        );
        // Explicit VR: the first element header carries its VR.
        assert_eq!(&prepared[0].dataset[4..6], b"CS");
    }
}
