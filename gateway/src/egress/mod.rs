//! Egress, after `results`: result objects forwarded to PACS by C-STORE
//! through a durable retry queue.
//!
//! The path of a result through here: the `results` stage calls
//! [`EgressHandle::enqueue`], which commits a row in the `deliveries` table
//! of the index database ([`DeliveryQueue`]) and wakes that destination's
//! worker. The worker ([`Egress::spawn`]) takes due rows, opens one
//! association per destination ([`ForwardAssociation`]), streams each file
//! as stored, and records the outcome: delivered, retried after an
//! exponential backoff ([`RetryPolicy`]), or dead-lettered
//! ([`ForwardError::disposition`]). Delivered and dead-lettered exports are
//! audited in the same transaction as the state change. Delivery is at
//! least once: a crash between the destination's answer and our commit
//! sends the instance again, which a PACS treats as a duplicate. The
//! destinations in force change on an admin reload
//! ([`EgressHandle::apply_destinations`], one task per destination in
//! `pool`).

mod config;
mod error;
mod file;
mod metrics;
mod pdata;
mod pool;
mod queue;
mod scu;
mod worker;

pub use config::{Destination, RawDestination, RawRetryPolicy, RetryPolicy, validate};
pub use error::{Disposition, Fault, ForwardError};
pub use file::PreparedInstance;
pub use pool::DestinationChanges;
pub(crate) use queue::create_schema;
pub use queue::{
    DeliveryFilter, DeliveryQueue, DeliveryRecord, DeliveryState, NewDelivery, QueueError,
};
pub use scu::{ForwardAssociation, send_instance};
pub use worker::{Egress, EgressHandle};

#[cfg(test)]
mod tests;
