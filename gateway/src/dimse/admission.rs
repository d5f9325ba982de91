//! Admission of DIMSE connections, before and after association negotiation.
//!
//! The accept loop asks [`Admission::admit`] for every new TCP connection. A
//! connection that has not yet sent a valid A-ASSOCIATE-RQ holds only a
//! [`Negotiating`] permit: one of `dimse.max_negotiating`, and one of
//! `dimse.max_negotiating_per_peer` for its source address. Only once its
//! request has been read and accepted does it trade that permit for an
//! [`AssociationSlot`] (one of `dimse.max_associations`). So silent sockets
//! can exhaust at most the small negotiating budget, never the association
//! slots that real modalities need, and one address cannot take the whole
//! negotiating budget either.
//!
//! Nothing here waits: every decision is a try-acquire, so a refusal costs
//! the accept loop nothing. Counting refusals is the caller's job.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The three budgets, from `[dimse]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connections that have not yet sent a valid A-ASSOCIATE-RQ, all peers.
    pub max_negotiating: usize,
    /// Of those, from one source address.
    pub max_negotiating_per_peer: usize,
    /// Accepted associations.
    pub max_associations: usize,
}

/// Why a connection was turned away; a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// All negotiating permits are held: closed at once, nothing read.
    NegotiatingBudget,
    /// This address already holds its share of them: closed at once.
    PerPeerCap,
    /// The request was accepted but every association slot is taken:
    /// answered A-ASSOCIATE-RJ (2,3,2).
    AssociationLimit,
}

impl Refusal {
    /// Every value, so the metric's label set can be created up front.
    pub const ALL: [Refusal; 3] = [
        Self::NegotiatingBudget,
        Self::PerPeerCap,
        Self::AssociationLimit,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            Self::NegotiatingBudget => "negotiating_budget",
            Self::PerPeerCap => "per_peer_cap",
            Self::AssociationLimit => "association_limit",
        }
    }
}

/// The connection budgets of one DIMSE listener.
pub struct Admission {
    negotiating: Arc<Semaphore>,
    per_peer: Arc<PeerCounts>,
    associations: Arc<Semaphore>,
    max_associations: usize,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            negotiating: Arc::new(Semaphore::new(limits.max_negotiating)),
            per_peer: Arc::new(PeerCounts {
                cap: limits.max_negotiating_per_peer,
                held: Mutex::new(HashMap::new()),
            }),
            associations: Arc::new(Semaphore::new(limits.max_associations)),
            max_associations: limits.max_associations,
        }
    }

    /// A new TCP connection from `peer`: a negotiating permit, or why not.
    pub fn admit(&self, peer: IpAddr) -> Result<Negotiating, Refusal> {
        // The per-peer share first: one busy address must not be able to
        // push its own excess onto the global budget's refusal count.
        let peer_share = PeerShare::take(&self.per_peer, peer.to_canonical())?;
        let permit = self
            .negotiating
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::NegotiatingBudget)?;
        Ok(Negotiating {
            _permit: permit,
            _peer_share: peer_share,
            associations: self.associations.clone(),
        })
    }

    /// Waits up to `deadline` for every association slot to be free again
    /// (graceful shutdown); `false` when some were still held.
    ///
    /// The semaphore is fair: once this is waiting, a slot released by one
    /// association goes to the drain, not to a connection still negotiating,
    /// which is then answered "busy".
    pub async fn drain(&self, deadline: Duration) -> bool {
        let all = u32::try_from(self.max_associations).unwrap_or(u32::MAX);
        tokio::time::timeout(deadline, self.associations.acquire_many(all))
            .await
            .is_ok()
    }

    /// Association slots held now.
    pub fn associations_open(&self) -> usize {
        self.max_associations - self.associations.available_permits()
    }
}

/// Held by a connection while it negotiates; released on drop.
pub struct Negotiating {
    _permit: OwnedSemaphorePermit,
    _peer_share: PeerShare,
    associations: Arc<Semaphore>,
}

impl Negotiating {
    /// The request has been read and accepted: trade this permit for an
    /// association slot. With none free, the permit comes back so the
    /// connection stays counted while it is answered "busy".
    pub fn associate(self) -> Result<AssociationSlot, Negotiating> {
        match self.associations.clone().try_acquire_owned() {
            Ok(permit) => Ok(AssociationSlot { _permit: permit }),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(self),
        }
    }
}

/// One of `max_associations`, held for the life of an association.
pub struct AssociationSlot {
    _permit: OwnedSemaphorePermit,
}

/// Negotiating connections per source address. The map holds only
/// addresses with a connection negotiating now, so it is bounded by the
/// negotiating budget (plus refusals in flight).
struct PeerCounts {
    cap: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One address's share of the negotiating budget; given back on drop.
struct PeerShare {
    counts: Arc<PeerCounts>,
    peer: IpAddr,
}

impl PeerShare {
    fn take(counts: &Arc<PeerCounts>, peer: IpAddr) -> Result<Self, Refusal> {
        // No code under this lock can panic, but a poisoned map is still a
        // correct map: keep going rather than refusing every peer.
        let mut held = counts.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(peer).or_insert(0);
        if *count >= counts.cap {
            if *count == 0 {
                held.remove(&peer);
            }
            return Err(Refusal::PerPeerCap);
        }
        *count += 1;
        Ok(Self {
            counts: counts.clone(),
            peer,
        })
    }
}

impl Drop for PeerShare {
    fn drop(&mut self) {
        let mut held = self
            .counts
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn admission(negotiating: usize, per_peer: usize, associations: usize) -> Admission {
        Admission::new(AdmissionLimits {
            max_negotiating: negotiating,
            max_negotiating_per_peer: per_peer,
            max_associations: associations,
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn one_address_is_capped_below_the_global_budget() {
        let a = admission(8, 2, 4);
        let held: Vec<_> = (0..2).map(|_| a.admit(ip(2)).unwrap()).collect();
        assert_eq!(a.admit(ip(2)).err(), Some(Refusal::PerPeerCap));
        // Another address still gets in.
        let other = a.admit(ip(3)).unwrap();
        drop(held);
        assert!(a.admit(ip(2)).is_ok());
        drop(other);
    }

    #[test]
    fn the_global_budget_holds_across_addresses() {
        let a = admission(3, 2, 4);
        let held = [
            a.admit(ip(2)).unwrap(),
            a.admit(ip(2)).unwrap(),
            a.admit(ip(3)).unwrap(),
        ];
        assert_eq!(a.admit(ip(4)).err(), Some(Refusal::NegotiatingBudget));
        // The refused connection's per-peer share was given back.
        assert!(a.per_peer.held.lock().unwrap().get(&ip(4)).is_none());
        drop(held);
        assert!(a.admit(ip(4)).is_ok());
    }

    #[test]
    fn negotiating_connections_take_no_association_slot() {
        let a = admission(8, 8, 1);
        let silent: Vec<_> = (0..6).map(|_| a.admit(ip(2)).unwrap()).collect();
        assert_eq!(a.associations_open(), 0);
        let modality = a.admit(ip(1)).unwrap();
        let slot = modality.associate().ok().unwrap();
        assert_eq!(a.associations_open(), 1);
        drop(silent);
        drop(slot);
        assert_eq!(a.associations_open(), 0);
    }

    #[test]
    fn associating_frees_the_negotiating_permit() {
        let a = admission(1, 1, 4);
        let slot = a.admit(ip(1)).unwrap().associate().ok().unwrap();
        // The one negotiating permit and this address's share are free again.
        let next = a.admit(ip(1)).unwrap();
        drop((slot, next));
        assert!(a.per_peer.held.lock().unwrap().is_empty());
    }

    #[test]
    fn a_full_association_limit_hands_the_permit_back() {
        let a = admission(2, 2, 1);
        let first = a.admit(ip(1)).unwrap().associate().ok().unwrap();
        let busy = a.admit(ip(1)).unwrap().associate().err().unwrap();
        // Still counted as negotiating while it is answered "busy".
        let _third = a.admit(ip(1)).unwrap();
        assert_eq!(a.admit(ip(1)).err(), Some(Refusal::PerPeerCap));
        drop((busy, first));
        assert_eq!(a.associations_open(), 0);
    }

    #[test]
    fn ipv4_mapped_addresses_share_the_ipv4_cap() {
        let a = admission(8, 1, 1);
        let _v4 = a.admit(ip(9)).unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 9).to_ipv6_mapped());
        assert_eq!(a.admit(mapped).err(), Some(Refusal::PerPeerCap));
    }

    #[tokio::test]
    async fn drain_waits_for_open_associations_only() {
        let a = Arc::new(admission(4, 4, 2));
        let _negotiating = a.admit(ip(2)).unwrap();
        let slot = a.admit(ip(1)).unwrap().associate().ok().unwrap();
        assert!(!a.drain(Duration::from_millis(20)).await);
        let drainer = {
            let a = a.clone();
            tokio::spawn(async move { a.drain(Duration::from_secs(5)).await })
        };
        // While the drain waits, a newly accepted request finds no slot.
        tokio::task::yield_now().await;
        while a.associations.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(a.admit(ip(3)).unwrap().associate().is_err());
        drop(slot);
        assert!(drainer.await.unwrap());
    }

    #[test]
    fn labels_are_distinct() {
        let labels: std::collections::HashSet<_> =
            Refusal::ALL.iter().map(|r| r.as_label()).collect();
        assert_eq!(labels.len(), Refusal::ALL.len());
    }
}
