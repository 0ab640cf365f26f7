//! Cluster mode at the edge (contract §7): this node's membership and
//! ownership (the coordination shell of `parkme-coord`, driving the
//! node's actors through [`NodeHost`]), the authenticated channel to the
//! other nodes, and the routing of requests to a facility's owner
//! ([`routing`]).
//!
//! Safety never rests on this module: the lease only decides who *should*
//! write a facility, the epochs in the store decide who *can* (a deposed
//! writer is fenced by the store, and its zones stop).
//!
//! This module must never decide ownership itself (that is
//! `parkme_cluster::ownership`), never hold a lock across a network call,
//! and never wait for Redis on a request's path.

pub mod fanout;
pub mod relay;
pub mod routing;
pub mod signature;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parkme_actors::{Fenced, Node};
use parkme_cluster::{Incarnation, Member, NodeId, NodeName, NodeStatus, OwnershipConfig};
use parkme_coord::{ClusterView, Coordination, Driver, DriverConfig, Host};
use parkme_engine::FacilityId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::GatewayError;
use crate::config::Config;
use crate::metrics;
use crate::redis::RedisSettings;

/// Handoffs (and, separately, acquisitions) under way at once.
const MOVES_PER_ROUND: usize = 8;

/// What this node is in the cluster, and its handle on the others.
pub struct Cluster {
    me: Member,
    secret: Vec<u8>,
    lease: Duration,
    driver: OnceLock<Driver>,
    coord: OnceLock<Coordination>,
    /// Keep-alive connections to the other nodes, for forwarded requests.
    client: reqwest::Client,
    /// Cleared at SIGTERM: `/health/ready` answers 503 from then on.
    ready: AtomicBool,
    /// Copies of facilities owned elsewhere, for this node's subscribers.
    mirrors: OnceLock<Arc<fanout::Mirrors>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("me", &self.me)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// The cluster settings of a node, checked before anything starts.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub name: NodeName,
    pub advertise_url: Option<String>,
    pub secret: Vec<u8>,
    pub lease: Duration,
}

impl ClusterSettings {
    /// `None` outside cluster mode; an error names what is missing.
    pub fn from_config(config: &Config) -> Result<Option<Self>, GatewayError> {
        if !config.is_cluster() {
            return Ok(None);
        }
        if config.demo {
            return Err(GatewayError::Cluster(
                "--demo runs a single node: unset PARKME_REDIS_URL or use embedded storage".into(),
            ));
        }
        let secret = config
            .cluster_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                GatewayError::Cluster(
                    "PARKME_CLUSTER_SECRET is required on a cluster node (PARKME_REDIS_URL and \
                     scylla:// storage are set): it authenticates node-to-node traffic"
                        .into(),
                )
            })?;
        let raw_name = match &config.node_id {
            Some(name) => name.clone(),
            None => host_name(),
        };
        let name = NodeName::parse(&raw_name).map_err(|e| {
            GatewayError::Cluster(format!("PARKME_NODE_ID {raw_name:?} cannot be used: {e}"))
        })?;
        let advertise_url = config
            .advertise_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        if let Some(url) = &advertise_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(GatewayError::Cluster(format!(
                "PARKME_ADVERTISE_URL {url:?} must be an http:// or https:// base URL"
            )));
        }
        Ok(Some(Self {
            name,
            advertise_url,
            secret: secret.as_bytes().to_vec(),
            lease: Duration::from_millis(config.lease_ms),
        }))
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "parkme".to_owned())
}

impl Cluster {
    /// Joins the cluster in the background: connects to Redis (retrying
    /// until it answers; the node serves nothing until then), then runs
    /// the coordination shell until `stop`. Fenced reports from the
    /// node's zones (`fenced`) reach the shell.
    pub fn start(
        settings: ClusterSettings,
        redis: &RedisSettings,
        node: Node,
        fenced: mpsc::UnboundedReceiver<Fenced>,
        local_url: String,
        stop: CancellationToken,
    ) -> Result<Arc<Cluster>, GatewayError> {
        let me = Member {
            id: NodeId::new(settings.name, Incarnation(rand::random())),
            url: settings.advertise_url.unwrap_or(local_url),
            status: NodeStatus::Up,
        };
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(50))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| GatewayError::Cluster(format!("node-to-node client: {e}")))?;
        let redis_client =
            crate::redis::client(redis).map_err(|e| GatewayError::Redis(e.to_string()))?;
        let cluster = Arc::new(Cluster {
            me,
            secret: settings.secret,
            lease: settings.lease,
            driver: OnceLock::new(),
            coord: OnceLock::new(),
            client,
            ready: AtomicBool::new(true),
            mirrors: OnceLock::new(),
        });
        let prefix = format!("{}cluster:", redis.prefix);
        let timeout = redis.timeout.max(Duration::from_millis(200));
        tokio::spawn(join(
            Arc::clone(&cluster),
            redis_client,
            prefix,
            timeout,
            node,
            fenced,
            stop,
        ));
        Ok(cluster)
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The cluster as of the last tick (empty until Redis first answered).
    pub fn view(&self) -> ClusterView {
        self.driver.get().map(Driver::view).unwrap_or_default()
    }

    /// Whether this node owns `facility` now.
    pub fn owns(&self, facility: &FacilityId) -> bool {
        self.driver.get().is_some_and(|d| d.owns(facility))
    }

    /// This node's copies of facilities owned elsewhere (once joined).
    pub fn mirrors(&self) -> Option<&Arc<fanout::Mirrors>> {
        self.mirrors.get()
    }

    pub fn joined(&self) -> bool {
        self.driver.get().is_some()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.joined()
    }

    /// Tells every node to look again now (a new facility to place).
    pub async fn nudge(&self, facility: &FacilityId) {
        if let Some(coord) = self.coord.get() {
            coord.hint_released(facility).await;
        }
    }

    /// SIGTERM: readiness goes 503 at once, and every facility is handed
    /// to other nodes; resolves when done or after `bound`.
    pub async fn drain(&self, bound: Duration) {
        self.ready.store(false, Ordering::Relaxed);
        let Some(driver) = self.driver.get() else {
            return;
        };
        driver.drain();
        if tokio::time::timeout(bound, driver.drained()).await.is_err() {
            tracing::warn!(
                "handing facilities over took longer than {bound:?}; stopping with what is left"
            );
        } else {
            tracing::info!("every facility handed over");
        }
    }
}

/// Connects to Redis, then runs the shell.
async fn join(
    cluster: Arc<Cluster>,
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    node: Node,
    mut fenced: mpsc::UnboundedReceiver<Fenced>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    let conn = loop {
        let connect = client.get_connection_manager();
        tokio::select! {
            () = stop.cancelled() => return,
            result = tokio::time::timeout(Duration::from_secs(2), connect) => match result {
                Ok(Ok(conn)) => break conn,
                Ok(Err(e)) => tracing::warn!(error = %e, "cluster: Redis unreachable; this node serves nothing until it answers"),
                Err(_) => tracing::warn!("cluster: Redis did not answer; this node serves nothing until it does"),
            },
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    };
    let coord = Coordination::new(conn, &prefix, cluster.lease, timeout);
    let host = Arc::new(NodeHost {
        node: node.clone(),
        coord: coord.clone(),
    });
    let config = DriverConfig {
        member: cluster.me.clone(),
        tick: (cluster.lease / 5).max(Duration::from_millis(100)),
        ownership: OwnershipConfig {
            moves_per_round: MOVES_PER_ROUND,
        },
    };
    let driver = Driver::spawn(
        coord.clone(),
        Some(client.clone()),
        host,
        config,
        stop.clone(),
    );
    let mirrors = fanout::Mirrors::start(
        fanout::MirrorSettings {
            coord: coord.clone(),
            driver: driver.clone(),
            redis: client,
            http: cluster.client.clone(),
            secret: cluster.secret.clone(),
            me: cluster.me.id.clone(),
            wait: routing::wait_budget(&cluster),
        },
        stop.clone(),
    );
    let _ = cluster.mirrors.set(mirrors);
    let _ = cluster.coord.set(coord);
    let _ = cluster.driver.set(driver.clone());
    tracing::info!(node = %cluster.me.id, url = %cluster.me.url, "joined the cluster");
    let gauges = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let view = driver.view();
            metrics::cluster_gauges(view.members.len(), owned(&view));
        }
    };
    let reports = async {
        while let Some(report) = fenced.recv().await {
            metrics::fenced_write();
            // A zone of an older start of the facility (stopping after a
            // drop, while the facility was taken again) says nothing about
            // the one served now.
            if node.is_current(&report) {
                driver.report_fenced(report.facility);
            }
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        () = gauges => {}
        () = reports => {}
    }
}

/// How many facilities the view says this node owns.
pub fn owned(view: &ClusterView) -> usize {
    view.holding
        .values()
        .filter(|h| **h == parkme_cluster::Holding::Owned)
        .count()
}

/// The node's actors as the coordination shell sees them.
struct NodeHost {
    node: Node,
    coord: Coordination,
}

impl Host for NodeHost {
    async fn facilities(&self) -> Result<BTreeSet<FacilityId>, String> {
        self.node
            .stored_facility_ids()
            .await
            .map(|ids| ids.into_iter().collect())
            .map_err(|e| e.to_string())
    }

    async fn acquire(&self, facility: &FacilityId) -> Result<u64, String> {
        let started = std::time::Instant::now();
        let epoch = self
            .node
            .acquire(facility)
            .await
            .map_err(|e| e.to_string())?;
        metrics::ownership_change("acquired");
        fanout::spawn_publisher(self.node.clone(), self.coord.clone(), facility.clone());
        tracing::info!(facility = %facility, epoch, ms = started.elapsed().as_millis() as u64, "serving facility");
        Ok(epoch)
    }

    async fn release(&self, facility: &FacilityId) {
        self.node.release(facility).await;
        metrics::ownership_change("released");
        tracing::info!(facility = %facility, "facility handed over");
    }

    async fn drop_facility(&self, facility: &FacilityId) {
        self.node.drop_facility(facility).await;
        metrics::ownership_change("dropped");
    }
}
