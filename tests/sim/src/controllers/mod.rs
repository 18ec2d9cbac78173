//! In-process controllers. Each is level-triggered: it wakes when the store
//! changes (or on a slow resync for timers), reads current state and writes
//! through the same API layer clients use.

pub mod autoscaler;
pub mod deployments;
pub mod gc;
pub mod jobs;
pub mod kubelet;
pub mod pod_failure_policy;
pub mod podgc;
pub mod replicasets;
pub mod scheduler;

use crate::Shared;
use std::sync::Arc;
use std::time::Duration;

pub fn spawn_all(shared: Arc<Shared>) {
    tokio::spawn(run_loop(
        shared.clone(),
        "garbage-collector",
        Duration::from_secs(2),
        gc::reconcile,
    ));
    tokio::spawn(run_loop(
        shared.clone(),
        "pod-garbage-collector",
        Duration::from_secs(2),
        podgc::reconcile,
    ));
    tokio::spawn(run_loop(
        shared.clone(),
        "default-scheduler",
        Duration::from_secs(2),
        scheduler::reconcile,
    ));
    let jc = Arc::new(jobs::JobController::default());
    tokio::spawn(run_loop(
        shared.clone(),
        "job-controller",
        Duration::from_millis(500),
        move |s| jc.reconcile(s),
    ));
    tokio::spawn(run_loop(
        shared.clone(),
        "deployment-controller",
        Duration::from_secs(1),
        deployments::reconcile,
    ));
    tokio::spawn(run_loop(
        shared.clone(),
        "replicaset-controller",
        Duration::from_secs(1),
        replicasets::reconcile,
    ));
    tokio::spawn(run_loop(
        shared.clone(),
        "cluster-autoscaler",
        Duration::from_millis(250),
        autoscaler::reconcile,
    ));
    let host: Arc<dyn kubelet::Host> = Arc::new(kubelet::SimHost::new(shared.clone()));
    tokio::spawn(run_loop(
        shared,
        "kubelet",
        Duration::from_secs(1),
        move |s| kubelet::reconcile_sim(&host, s),
    ));
}

/// Run `f` whenever the store's resourceVersion moves, at most every few
/// milliseconds (bursts coalesce), and at least every `resync`.
async fn run_loop<F>(shared: Arc<Shared>, name: &'static str, resync: Duration, f: F)
where
    F: Fn(&Arc<Shared>),
{
    let mut changed = shared.cluster.changed.subscribe();
    let mut stop = shared.shutdown.subscribe();
    loop {
        let rv = *changed.borrow_and_update();
        f(&shared);
        tracing::trace!(controller = name, rv, "reconciled");
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(resync) => {}
            _ = stop.changed() => return,
        }
        // Coalesce bursts of writes into one pass.
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}
