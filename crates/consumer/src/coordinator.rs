//! Lease coordination as the KCL does it: renew held leases, notice expired
//! leases by watching their counters, take a fair share, steal from the most
//! loaded worker when nothing is free.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;

use crate::lease::{Lease, LeaseError, LeaseStore};
use crate::processor::{HeldLease, Reread};
use std::sync::atomic::Ordering;

/// What to take in one round, given every lease, which of them look expired,
/// who we are and how many we may steal at once. Finished (SHARD_END) leases
/// are neither counted nor taken.
pub fn select_leases_to_take(
    all: &[Lease],
    is_expired: impl Fn(&Lease) -> bool,
    me: &str,
    max_steal: usize,
) -> Vec<Lease> {
    let active: Vec<&Lease> = all
        .iter()
        .filter(|l| !l.checkpoint.is_shard_end())
        .collect();
    if active.is_empty() {
        return Vec::new();
    }
    // Leases per live owner (we always count ourselves).
    let mut per_owner: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
    per_owner.insert(me, Vec::new());
    let mut available = Vec::new();
    for l in &active {
        match &l.lease_owner {
            Some(o) if !is_expired(l) => per_owner.entry(o.as_str()).or_default().push(l),
            _ => available.push(*l),
        }
    }
    let workers = per_owner.len();
    let target = active.len().div_ceil(workers);
    let mine = per_owner[me].len();
    if mine >= target {
        return Vec::new();
    }
    let need = target - mine;
    let mut rng = rand::thread_rng();
    if !available.is_empty() {
        available.shuffle(&mut rng);
        return available.into_iter().take(need).cloned().collect();
    }
    // Nothing free: steal from the most loaded worker if it is over target.
    let Some((_, theirs)) = per_owner
        .iter()
        .filter(|(o, _)| **o != me)
        .max_by_key(|(_, v)| v.len())
    else {
        return Vec::new();
    };
    if theirs.len() <= target {
        return Vec::new();
    }
    let n = need.min(theirs.len() - target).min(max_steal);
    let mut theirs = theirs.clone();
    theirs.shuffle(&mut rng);
    theirs.into_iter().take(n).cloned().collect()
}

/// Renewal and taking for one worker.
pub struct LeaseCoordinator<S> {
    pub(crate) store: Arc<S>,
    pub(crate) worker_id: String,
    pub(crate) lease_duration: Duration,
    pub(crate) max_steal: usize,
    /// Counter last seen for each lease, and when it last changed (our clock).
    observed: HashMap<String, (u64, Instant)>,
    pub(crate) held: HashMap<String, (Arc<HeldLease<S>>, Instant)>,
}

impl<S: LeaseStore> LeaseCoordinator<S> {
    pub fn new(
        store: Arc<S>,
        worker_id: impl Into<String>,
        lease_duration: Duration,
    ) -> LeaseCoordinator<S> {
        LeaseCoordinator {
            store,
            worker_id: worker_id.into(),
            lease_duration,
            max_steal: 1,
            observed: HashMap::new(),
            held: HashMap::new(),
        }
    }

    pub fn held_keys(&self) -> Vec<String> {
        let mut v: Vec<String> = self.held.keys().cloned().collect();
        v.sort();
        v
    }

    pub(crate) fn held(&self, key: &str) -> Option<Arc<HeldLease<S>>> {
        self.held.get(key).map(|(h, _)| h.clone())
    }

    /// Forgets a lease without touching the table (lost, or finished).
    pub fn forget(&mut self, key: &str) {
        self.held.remove(key);
    }

    /// Scans the table, and takes leases up to a fair share. Returns the keys
    /// newly taken.
    pub async fn take_leases(&mut self, now: Instant) -> Result<Vec<String>, LeaseError> {
        let all = self.store.list_leases().await?;
        for l in &all {
            match self.observed.get(&l.lease_key) {
                Some((c, _)) if *c == l.lease_counter => {}
                _ => {
                    self.observed
                        .insert(l.lease_key.clone(), (l.lease_counter, now));
                }
            }
        }
        let observed = &self.observed;
        let duration = self.lease_duration;
        let held = &self.held;
        let is_expired = |l: &Lease| {
            if held.contains_key(&l.lease_key) {
                return false;
            }
            match observed.get(&l.lease_key) {
                Some((_, t)) => now.saturating_duration_since(*t) > duration,
                None => true,
            }
        };
        // Leases the table says are ours but we do not hold (a restart with
        // the same worker id) count as expired only by the clock above.
        let chosen: Vec<(Lease, bool)> =
            select_leases_to_take(&all, is_expired, &self.worker_id, self.max_steal)
                .into_iter()
                .map(|l| {
                    let live = !is_expired(&l);
                    (l, live)
                })
                .collect();
        let mut taken = Vec::new();
        for (l, live) in chosen {
            let steal = live && matches!(&l.lease_owner, Some(o) if o != &self.worker_id);
            let result = if steal {
                self.store.request_handoff(&l, &self.worker_id).await
            } else {
                self.store.take_lease(&l, &self.worker_id).await
            };
            match result {
                Ok(new) => {
                    if let Some(prev) = &l.lease_owner
                        && prev != &self.worker_id
                    {
                        tracing::info!(
                            shard = %l.lease_key,
                            from = %prev,
                            "took lease"
                        );
                    }
                    self.observed
                        .insert(new.lease_key.clone(), (new.lease_counter, now));
                    taken.push(new.lease_key.clone());
                    let held = HeldLease::new(new.clone(), self.store.clone(), &self.worker_id);
                    held.awaiting_handoff
                        .store(new.checkpoint_owner.is_some(), Ordering::SeqCst);
                    self.held
                        .insert(new.lease_key.clone(), (Arc::new(held), now));
                }
                Err(e) if e.is_condition_failed() => {}
                Err(e) => return Err(e),
            }
        }
        metrics::gauge!("eddy_consumer_leases_held").set(self.held.len() as f64);
        Ok(taken)
    }

    /// Renews every held lease. Returns the keys lost: someone else took
    /// them (or asked for them: then the lease's `is_handing_off`), or
    /// renewal kept failing for a whole lease duration.
    pub async fn renew_leases(&mut self, now: Instant) -> Vec<String> {
        let mut lost = Vec::new();
        for (key, (held, renewed)) in self.held.iter_mut() {
            let mut lease = held.lease.lock().await;
            let mut result = self.store.renew_lease(&lease).await;
            if let Err(LeaseError::ConditionFailed(_)) = &result
                && let Reread::Mine = held.reread(&mut lease).await
            {
                result = self.store.renew_lease(&lease).await;
            }
            match result {
                Ok(new) => {
                    *lease = new;
                    *renewed = now;
                }
                Err(e) if e.is_condition_failed() => lost.push(key.clone()),
                Err(e) => {
                    tracing::warn!(shard = %key, "renewing lease: {e}");
                    if now.saturating_duration_since(*renewed) > self.lease_duration {
                        lost.push(key.clone());
                    }
                }
            }
        }
        for k in &lost {
            self.held.remove(k);
        }
        metrics::gauge!("eddy_consumer_leases_held").set(self.held.len() as f64);
        lost
    }

    /// Gives a lease back (shutdown) so another worker can take it at once.
    pub async fn release(&mut self, key: &str) {
        if let Some((held, _)) = self.held.remove(key) {
            let lease = held.lease.lock().await;
            if let Err(e) = self.store.evict_lease(&lease).await {
                tracing::debug!(shard = %key, "releasing lease: {e}");
            }
        }
    }
}
