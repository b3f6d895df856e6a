//! Metering: every second, what each component holds (instances and their
//! reservations, quota or burst) and what it used (CPU, memory, traffic from
//! the telemetry bus) goes into the accumulator; every minute the closed
//! minutes are appended to the ledger, written once each; the accumulator's
//! state is checkpointed to the store every few seconds, so a kill -9 loses
//! at most those seconds and never counts a minute twice.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vdc_metering::{Accumulator, Checkpoint, LedgerEntry, Reservation};
use vdc_model::{Admission, Tenant, Usage};
use vdc_telemetry::{Filter, Message, Topic};

use crate::ControlPlane;

/// The store setting holding the accumulator's checkpoint.
const CHECKPOINT: &str = "metering-checkpoint";
/// How often the open minute is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// The accumulator as the last run left it.
async fn restore(control: &ControlPlane) -> Accumulator {
    match control.store().setting::<Checkpoint>(CHECKPOINT).await {
        Ok(Some(checkpoint)) => match Accumulator::restore(checkpoint) {
            Ok(acc) => acc,
            Err(e) => {
                tracing::error!(
                    "the metering checkpoint cannot be restored ({e}); metering starts afresh"
                );
                Accumulator::new()
            }
        },
        Ok(None) => Accumulator::new(),
        Err(e) => {
            tracing::error!("cannot read the metering checkpoint ({e}); metering starts afresh");
            Accumulator::new()
        }
    }
}

/// Meters while this server leads (only the leader writes the ledger and
/// the checkpoint); on becoming leader it starts from the checkpoint the
/// previous leader left.
pub(crate) async fn run(control: ControlPlane, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = control.leading() => {}
        }
        if lead(&control, &shutdown).await {
            return;
        }
    }
}

/// Meters until shutdown (true) or until this server stops leading (false).
async fn lead(control: &ControlPlane, shutdown: &CancellationToken) -> bool {
    let control = control.clone();
    let mut leader = control.leader();
    let mut acc = restore(&control).await;
    let mut samples =
        control
            .telemetry()
            .bus()
            .subscribe(Topic::Metrics, Filter::default(), 1 << 14);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_checkpoint = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // Another server may lead now: it writes from here on.
            Ok(()) = leader.changed() => if !control.is_leader() {
                tracing::info!("metering pauses: this server no longer leads");
                return false;
            },
            message = samples.recv() => match message {
                Some(Message::Resources(sample)) => {
                    let _ = acc.observe_resource_sample(&sample);
                }
                Some(Message::Traffic(sample)) => {
                    acc.observe_traffic_sample(&sample);
                }
                Some(Message::Dropped { count }) => {
                    tracing::warn!(count, "metering fell behind the telemetry stream and lost samples");
                }
                Some(Message::Event(_) | Message::Load(_)) => {}
                None => break,
            },
            _ = tick.tick() => {
                if !control.is_leader() {
                    return false;
                }
                let ts = crate::telemetry::now_s();
                observe_reservations(&control, &mut acc, ts).await;
                let closed = acc.close_due(ts);
                let wrote = append(&control, &closed).await;
                if wrote && (!closed.is_empty() || last_checkpoint.elapsed() >= CHECKPOINT_EVERY) {
                    save(&control, &acc).await;
                    last_checkpoint = tokio::time::Instant::now();
                }
            }
        }
    }
    if control.is_leader() {
        save(&control, &acc).await;
    }
    true
}

/// Appends closed minutes; false if the store failed (the checkpoint must
/// then not move past them).
async fn append(control: &ControlPlane, entries: &[LedgerEntry]) -> bool {
    for entry in entries {
        if let Err(e) = control.store().append_ledger(&entry.key(), entry).await {
            tracing::error!(key = %entry.key(), "cannot write to the ledger: {e}");
            return false;
        }
    }
    true
}

async fn save(control: &ControlPlane, acc: &Accumulator) {
    if let Err(e) = control
        .store()
        .put_setting(CHECKPOINT, &acc.checkpoint())
        .await
    {
        tracing::error!("cannot checkpoint metering: {e}");
    }
}

/// One second of what every component holds. Within a tenant, instances are
/// counted in the order their apps were submitted; those that take the
/// tenant past its quota are the burst ones.
async fn observe_reservations(control: &ControlPlane, acc: &mut Accumulator, ts: u64) {
    let (Ok(mut apps), Ok(tenants)) = (
        control.store().apps().await,
        control.store().tenants().await,
    ) else {
        return;
    };
    apps.sort_by(|a, b| (a.submitted_at_ms, &a.spec.name).cmp(&(b.submitted_at_ms, &b.spec.name)));
    let tenants: BTreeMap<String, Tenant> = tenants
        .into_iter()
        .map(|t| (t.name.to_string(), t))
        .collect();
    let instances = control.instances();
    let mut held: BTreeMap<String, Usage> = BTreeMap::new();
    for app in apps.iter().filter(|a| !a.deleting) {
        let tenant = app.spec.tenant.as_str();
        for component in app
            .spec
            .components
            .values()
            .filter(|c| !c.appliance.is_builtin())
        {
            let running = instances
                .iter()
                .filter(|s| {
                    s.id.app == app.spec.name
                        && s.id.component == component.name
                        && s.state.has_process()
                })
                .count() as u32;
            let total = held.entry(tenant.to_owned()).or_default();
            let mut burst = 0;
            for _ in 0..running {
                *total = total.plus(Usage::of(component.resources, 1));
                if tenants
                    .get(tenant)
                    .is_some_and(|t| t.admit(*total) != Admission::Quota)
                {
                    burst += 1;
                }
            }
            let reservation = Reservation {
                instances: running,
                per_instance: component.resources,
                burst_instances: burst,
            };
            if let Err(e) = acc.observe_reservation(
                ts,
                tenant,
                app.spec.name.as_str(),
                component.name.as_str(),
                reservation,
            ) {
                tracing::warn!("metering: {e}");
            }
        }
    }
}

/// The ledger entries of a tenant (or all) in `[from, to)` minutes.
pub(crate) async fn entries(
    control: &ControlPlane,
    tenant: Option<&str>,
    from: vdc_metering::Minute,
    to: vdc_metering::Minute,
) -> Result<Vec<LedgerEntry>, vdc_store::StoreError> {
    let prefix = tenant.map(LedgerEntry::tenant_prefix).unwrap_or_default();
    let all: Vec<LedgerEntry> = control.store().ledger(&prefix).await?;
    Ok(all
        .into_iter()
        .filter(|e| e.minute >= from && e.minute < to)
        .collect())
}
