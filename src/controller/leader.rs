//! Leader election on a `coordination.k8s.io` Lease, so several replicas
//! can run and exactly one reconciles.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::error::{Error, Result};

/// Who competes for which Lease, and how fast.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// Waits until this replica holds the Lease.
pub async fn acquire(client: Client, config: &LeaderConfig) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut logged = false;
    loop {
        match try_take(&api, config).await {
            Ok(true) => {
                tracing::info!(lease = %config.lease_name, identity = %config.identity, "became the leader");
                return Ok(());
            }
            Ok(false) if !logged => {
                tracing::info!(lease = %config.lease_name, "another replica leads; standing by");
                logged = true;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
        }
        tokio::time::sleep(config.renew_every).await;
    }
}

/// Renews the Lease; returns (with an error) only when it was lost or could
/// not be renewed for a whole lease duration.
pub async fn hold(client: Client, config: &LeaderConfig) -> Error {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.renew_every).await;
        match try_take(&api, config).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => return Error::LeaseLost(config.lease_name.clone()),
            Err(e) => {
                tracing::warn!(error = %e, "renewing the leader lease failed");
                if last_renewal.elapsed() >= config.lease_duration {
                    return Error::LeaseLost(config.lease_name.clone());
                }
            }
        }
    }
}

/// Gives the Lease up on shutdown so a standby takes over at once.
pub async fn release(client: Client, config: &LeaderConfig) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let Ok(mut lease) = api.get(&config.lease_name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    if let Err(e) = api
        .replace(&config.lease_name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(error = %e, "releasing the leader lease failed");
    }
}

/// Takes or renews the Lease when it is free, expired or already ours.
/// Writes carry the resourceVersion read, so two replicas never both win.
async fn try_take(api: &Api<Lease>, config: &LeaderConfig) -> Result<bool> {
    let now = Timestamp::now();
    let duration_secs = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&config.lease_name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.lease_name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let ours = spec.holder_identity.as_deref() == Some(config.identity.as_str());
    let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
    let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
        let ttl = SignedDuration::from_secs(i64::from(
            spec.lease_duration_seconds.unwrap_or(duration_secs),
        ));
        renewed.0 + ttl < now
    });
    if !(ours || free || expired) {
        return Ok(false);
    }
    if !ours {
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(duration_secs);
    spec.renew_time = Some(MicroTime(now));
    match api
        .replace(&config.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
