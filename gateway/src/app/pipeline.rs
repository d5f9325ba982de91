//! Starts the inference pipeline: model repository, live routes, job
//! runners and the assembler, and stops them in order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::assemble::{Assembler, AssemblerStop, AssemblyConfig};
use crate::config::GatewayConfig;
use crate::egress::{DeliveryQueue, Egress, EgressHandle};
use crate::infer::CircuitRegistry;
use crate::jobs::{JobRunner, JobsNotifier, ModelCache, RunnerConfig, RunnerParts};
use crate::models::ModelRepository;
use crate::route::{RouteStateStore, RouteTable, RoutesError, RoutesHandle};
use crate::sites::SharedSites;

use super::Control;
use crate::store::Store;
use crate::telemetry::Metrics;

/// The running pipeline.
pub struct Pipeline {
    pub repository: Arc<ModelRepository>,
    /// Operator actions, live views and reload, for the admin API.
    pub control: Arc<Control>,
    /// The forwarding queue, for the API (deliveries, dead letters).
    pub egress: EgressHandle,
    egress_task: Option<tokio::task::JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    runners: Vec<tokio::task::JoinHandle<()>>,
    assembler: Option<(AssemblerStop, std::thread::JoinHandle<()>)>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// Shares operator route state with other replicas through Redis.
    route_sync: Option<crate::route::RouteStateSync>,
    /// Keeps `gateway_route_operator_state` in step with every change.
    state_metrics: tokio::task::JoinHandle<()>,
    /// Probes the loaded model versions (ends at shutdown).
    health_watch: tokio::task::JoinHandle<()>,
}

/// How often the assembler looks for ready series: a fraction of the
/// stable time, so a series is dispatched soon after it becomes ready.
fn poll_interval(stable_time: Duration) -> Duration {
    (stable_time / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

pub async fn start(
    config: &GatewayConfig,
    store: &Store,
    metrics: &Metrics,
    sites: &SharedSites,
) -> anyhow::Result<Pipeline> {
    let settings = &config.pipeline;
    let repository = Arc::new(
        ModelRepository::open(&settings.models_dir).with_context(|| {
            format!(
                "cannot open the model repository {}",
                settings.models_dir.display()
            )
        })?,
    );
    for invalid in repository.invalid() {
        tracing::warn!(dir = %invalid.dir.display(), problems = ?invalid.problems, "model version skipped");
    }
    for entry in repository.entries() {
        let manifest = entry.manifest();
        if let Some(baseline) = &manifest.baseline {
            metrics.drift.register_manifest_baseline(
                &manifest.name,
                &manifest.version.to_string(),
                baseline,
            );
        }
    }

    let models = Arc::new(
        ModelCache::new(Arc::clone(&repository), settings.engine_settings())
            .with_audit(store.layout().index_path()),
    );
    let notifier = JobsNotifier::default();
    let (shutdown, shutdown_rx) = watch::channel(false);

    let queue = DeliveryQueue::open(&store.layout().index_path())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot open the delivery queue")?;
    let mut egress_stop = shutdown_rx.clone();
    let (egress, egress_task) = Egress::spawn(
        queue,
        config.destinations.clone(),
        config.egress_retry,
        store.layout().root().to_path_buf(),
        config.ae_title.clone(),
        metrics.registry(),
        async move {
            let _ = egress_stop.wait_for(|stop| *stop).await;
        },
    )
    .context("cannot start egress")?;
    // Routes are checked against the repository and the destinations in
    // force, which an admin reload may replace.
    let known = Arc::clone(&models);
    let destinations = egress.clone();
    let validator = Arc::new(move |table: &RouteTable| -> Result<(), RoutesError> {
        let repository = known.repository();
        table.check(
            &|id| repository.get(&id.name, id.version).is_some(),
            &destinations.destination_names(),
        )
    });
    let routes = RoutesHandle::load(settings.routes_file.clone(), validator, metrics.registry())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot load the routes")?;
    let watcher = settings
        .routes_file
        .is_some()
        .then(|| routes.spawn_watcher(settings.routes_reload_interval));

    // Load every routed model now: a broken one shows at start, and the
    // first series does not wait for a load.
    for route in routes.current().routes() {
        if let Err(e) = models.get(&route.model).await {
            tracing::error!(route = %route.name, model = %route.model, error = %e, "model cannot serve; its jobs will fail");
        }
    }

    let states = Arc::new(
        crate::store::index::open(&store.layout().index_path())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|conn| RouteStateStore::load(conn).map_err(|e| anyhow::anyhow!("{e}")))
            .context("cannot load the operator route state")?,
    );
    let circuits = Arc::new(CircuitRegistry::new(settings.circuit));
    let cache = crate::cache::ResultCache::build(&config.cache, metrics.registry())
        .context("cannot set up the result cache")?;
    tracing::info!(backend = cache.backend(), "result cache");
    let route_sync = match config.cache.redis() {
        Some(redis) if redis.share_route_state => Some(
            crate::route::RouteStateSync::start(Arc::clone(&states), redis, metrics.registry())
                .context("cannot set up shared route state")?,
        ),
        _ => None,
    };
    let control = Arc::new(Control {
        routes: routes.clone(),
        states: Arc::clone(&states),
        models: Arc::clone(&models),
        circuits: Arc::clone(&circuits),
        metrics: metrics.clone(),
        index_path: store.layout().index_path(),
        config: config.clone(),
        sites: sites.clone(),
        egress: egress.clone(),
        in_force: tokio::sync::Mutex::new(super::reload::InForce::new(config)),
    });
    control.refresh_state_metrics();
    // Changes from the admin API and from other replicas (Redis sync) alike.
    let mut changes = states.subscribe();
    let watching = Arc::clone(&control);
    let state_metrics = tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match changes.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => watching.refresh_state_metrics(),
                Err(RecvError::Closed) => return,
            }
        }
    });

    let runner = JobRunner::new(
        RunnerConfig {
            workers: settings.workers,
            uid_root: settings.uid_root.clone(),
            ae_title: config.ae_title.clone(),
            max_attempts: settings.max_attempts,
            retry_delay: settings.retry_delay,
            poll_interval: Duration::from_secs(1),
            attempt_timeout: settings.attempt_timeout,
        },
        RunnerParts {
            store: store.clone(),
            models: Arc::clone(&models),
            egress: Some(egress.clone()),
            metrics: metrics.clone(),
            notifier: notifier.clone(),
            routes: routes.clone(),
            states: Arc::clone(&states),
            circuits: Arc::clone(&circuits),
            cache,
        },
    );
    let health_watch = crate::jobs::spawn_health_watch(
        Arc::clone(&models),
        Arc::clone(&circuits),
        metrics.pipeline.clone(),
        settings.health_interval,
        shutdown_rx.clone(),
    );
    let runners = runner
        .spawn(shutdown_rx)
        .await
        .context("cannot start the job runners")?;

    let conn = crate::store::index::open(&store.layout().index_path())
        .context("cannot open the index for assembly")?;
    let assembler = Assembler {
        conn,
        config: AssemblyConfig {
            stable_time: settings.stable_time,
            poll_interval: poll_interval(settings.stable_time),
        },
        routes,
        states,
        jobs: notifier,
        metrics: metrics.clone(),
    }
    .spawn()
    .context("cannot start the assembler")?;

    Ok(Pipeline {
        repository,
        control,
        egress,
        egress_task: Some(egress_task),
        shutdown,
        runners,
        assembler: Some(assembler),
        watcher,
        route_sync,
        state_metrics,
        health_watch,
    })
}

impl Pipeline {
    /// Stops taking new work; jobs in progress get up to `grace` to finish
    /// (a job cut short runs again at the next start).
    pub async fn stop(mut self, grace: Duration) {
        if let Some((stop, thread)) = self.assembler.take() {
            stop.stop();
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let _ = self.shutdown.send(true);
        let runners = futures::future::join_all(self.runners.drain(..));
        if tokio::time::timeout(grace, runners).await.is_err() {
            tracing::warn!("jobs still running at shutdown will run again at the next start");
        }
        // Drift distributions observed since the last periodic save.
        let drift = crate::telemetry::drift::DriftOutcome {
            events: Vec::new(),
            persist: Some(self.control.metrics.drift.take_dirty()),
        };
        let path = self.control.index_path.clone();
        let saved = tokio::task::spawn_blocking(move || {
            crate::store::index::open(&path).and_then(|mut conn| drift.write(&mut conn))
        })
        .await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!("drift state not saved at shutdown; the last periodic save stands");
        }
        if let Some(task) = self.egress_task.take() {
            // Deliveries cut short stay pending and go out after a restart.
            let _ = tokio::time::timeout(grace, task).await;
        }
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
        if let Some(sync) = self.route_sync.take() {
            sync.stop().await;
        }
        self.state_metrics.abort();
        self.health_watch.abort();
    }
}
