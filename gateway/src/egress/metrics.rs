//! Egress metric families, registered on the gateway's registry. Labels are
//! destination names (validated, bounded by the config) and fixed outcomes.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::DeliveryState;

/// Buckets for one delivery attempt, from a fast local PACS to a slow WAN.
const ATTEMPT_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Clone)]
pub(crate) struct EgressMetrics {
    /// Attempts by destination and outcome (delivered, retry, dead).
    pub deliveries: IntCounterVec,
    /// Rows in the queue by destination and state (pending, dead).
    pub queue_depth: IntGaugeVec,
    /// Duration of one delivery attempt, association set-up included.
    pub attempt_seconds: HistogramVec,
}

impl EgressMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let deliveries = IntCounterVec::new(
            Opts::new(
                "gateway_egress_deliveries_total",
                "Delivery attempts to destinations by outcome",
            ),
            &["destination", "outcome"],
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "gateway_egress_queue_depth",
                "Deliveries in the durable queue by destination and state",
            ),
            &["destination", "state"],
        )?;
        let attempt_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gateway_egress_attempt_seconds",
                "Duration of one delivery attempt to a destination",
            )
            .buckets(ATTEMPT_BUCKETS.to_vec()),
            &["destination"],
        )?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(attempt_seconds.clone()))?;
        Ok(Self {
            deliveries,
            queue_depth,
            attempt_seconds,
        })
    }

    /// Sets the depth gauges of `destination` from queue counts; states
    /// without rows read 0 rather than keeping a stale value.
    pub fn set_depth(&self, destination: &str, counts: &[(String, DeliveryState, u64)]) {
        for state in [DeliveryState::Pending, DeliveryState::Dead] {
            let n = counts
                .iter()
                .find(|(d, s, _)| d == destination && *s == state)
                .map_or(0, |(_, _, n)| *n);
            self.queue_depth
                .with_label_values(&[destination, state.as_str()])
                .set(n.min(i64::MAX as u64) as i64);
        }
    }
}
