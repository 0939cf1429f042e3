//! Prometheus exposition (text format 0.0.4, encoded by `prometheus-client`) on `global.metrics`
//! (e.g. 127.0.0.1:9650): `GET /metrics` from a status snapshot taken through the same channel
//! the control socket uses, plus the [`Observer`]'s book; `/health` and `/ready` on the same
//! listener. At most `MAX_CLIENTS` clients, `CLIENT_TIMEOUT` to send the request and to take the
//! answer. Every family, label and old name: docs/metrics.md.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::limit::{refuse, AcceptBackoff, ClientCounters, Gate, Ticket};
use super::observe::{Observed, Observer, Stage};
use super::{ClientStats, Envelope, InstanceStatus, Request, Status, VirtualServerStatus};
use crate::balance::{BackendStatus, Health};
use crate::config::Protocol;

pub const MAX_CLIENTS: usize = 16;
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// `/health` is 503 when the event loop does not answer within this.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read.
const MAX_HEAD: usize = 4096;

/// Render a status snapshot alone (no transitions, histograms or time without master).
pub fn render(st: &Status) -> String {
    render_with(st, &Observed::default())
}

/// Render a status snapshot and the observer's book as Prometheus text format 0.0.4.
pub fn render_with(st: &Status, obs: &Observed) -> String {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(Page {
        st: st.clone(),
        obs: obs.clone(),
    }));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &reg) {
        // Writing to a String cannot fail; say so on the page if it ever does.
        out = format!("# vipd: encoding the metrics failed: {e}\n");
    }
    out
}

/// One scrape: the snapshot the page is encoded from.
#[derive(Debug)]
struct Page {
    st: Status,
    obs: Observed,
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Writes families to the encoder: every family gets HELP and TYPE, even with no series.
struct Out<'e, 'w> {
    enc: &'e mut DescriptorEncoder<'w>,
}

impl Out<'_, '_> {
    /// A gauge family: `name`, `help`, one series per (labels, value).
    fn gauge<'l>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels<'l>, u64)>,
    ) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in series {
            ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A counter family; `name` without `_total` (the encoder appends it).
    fn counter<'l, V>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels<'l>, V)>,
    ) -> fmt::Result
    where
        V: prometheus_client::encoding::EncodeCounterValue,
    {
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in series {
            ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn histogram<'h>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels<'h>, &'h prometheus_client::metrics::histogram::Histogram)>,
    ) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h) in series {
            h.encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Collector for Page {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let mut o = Out { enc: &mut enc };
        daemon(&mut o, &self.st)?;
        vrrp(&mut o, &self.st, &self.obs)?;
        servers(&mut o, &self.st.virtual_servers, &self.obs)?;
        udp(&mut o, &self.st.virtual_servers)?;
        tcp(&mut o, &self.st.virtual_servers)?;
        endpoints(&mut o, &self.st)
    }
}

fn daemon(o: &mut Out, st: &Status) -> fmt::Result {
    o.gauge("vipd_up", "1 while the daemon runs", [(vec![], 1)])?;
    o.gauge(
        "vipd_build_info",
        "Always 1; the labels carry the version and the router_id",
        [(
            vec![("version", st.version.as_str()), ("router_id", st.router_id.as_str())],
            1,
        )],
    )?;
    o.gauge(
        "vipd_uptime_seconds",
        "Seconds since the daemon started",
        [(vec![], st.uptime_s)],
    )?;
    o.counter("vipd_reloads", "Configuration reloads applied", [(vec![], st.reloads)])?;
    o.counter(
        "vipd_reload_failures",
        "Reloads refused (the running configuration was kept)",
        [(vec![], st.reload_failures)],
    )?;
    o.counter(
        "vipd_control_errors",
        "Bad control requests (unparsable, unknown backend, bad state)",
        [(vec![], st.control_errors)],
    )?;
    o.counter(
        "vipd_control_requests_denied",
        "Changing control requests refused: not root, the daemon's user or the socket's group",
        [(vec![], st.control_requests_denied)],
    )
}

/// Labels of an instance.
fn inst(i: &InstanceStatus) -> Labels<'_> {
    vec![("vrrp_instance", i.router.name.as_str())]
}

/// Reads one counter of an instance.
type InstanceCounter = fn(&InstanceStatus) -> u64;

fn vrrp(o: &mut Out, st: &Status, obs: &Observed) -> fmt::Result {
    let insts = &st.instances;
    // The book keeps instances a reload removed: show only the running ones.
    let running: std::collections::BTreeSet<&str> = insts.iter().map(|i| i.router.name.as_str()).collect();
    let known = |name: &str| running.contains(name);
    o.gauge(
        "vipd_vrrp_state",
        "1 for the current state of each instance (init, backup, master, fault), 0 for the others",
        insts.iter().flat_map(|i| {
            ["init", "backup", "master", "fault"].map(|s| {
                let mut l = inst(i);
                l.push(("state", s));
                (l, u64::from(i.router.state.name() == s))
            })
        }),
    )?;
    o.gauge(
        "vipd_vrrp_priority",
        "Effective priority: the base priority adjusted by tracked objects",
        insts.iter().map(|i| (inst(i), u64::from(i.router.effective_priority))),
    )?;
    o.gauge(
        "vipd_vrrp_base_priority",
        "Configured priority",
        insts.iter().map(|i| (inst(i), u64::from(i.router.base_priority))),
    )?;
    o.gauge(
        "vipd_vrrp_link_up",
        "1 while the instance's interface is up",
        insts.iter().map(|i| (inst(i), u64::from(i.link_up))),
    )?;
    let counters: [(&str, &str, InstanceCounter); 11] = [
        ("vipd_vrrp_adverts_sent", "Adverts sent", |i| {
            i.router.counters.adverts_sent
        }),
        ("vipd_vrrp_adverts_received", "Adverts accepted", |i| {
            i.router.counters.adverts_received
        }),
        (
            "vipd_vrrp_priority_zero_sent",
            "Priority-0 adverts sent (leaving master)",
            |i| i.router.counters.priority_zero_sent,
        ),
        (
            "vipd_vrrp_priority_zero_received",
            "Priority-0 adverts received (the master is leaving)",
            |i| i.router.counters.priority_zero_received,
        ),
        ("vipd_vrrp_became_master", "Transitions to master", |i| {
            i.router.counters.became_master
        }),
        (
            "vipd_vrrp_vips_readded",
            "VIPs deleted behind our back while master and re-added",
            |i| i.vips_readded,
        ),
        (
            "vipd_vrrp_vip_add_failures",
            "VIP additions netlink refused (retried)",
            |i| i.vip_add_failures,
        ),
        (
            "vipd_vrrp_vip_remove_failures",
            "VIP removals that failed or left the VIP in place",
            |i| i.vip_remove_failures,
        ),
        (
            "vipd_vrrp_address_list_mismatch",
            "Accepted adverts whose address list differs from our VIPs",
            |i| i.router.counters.address_list_mismatch,
        ),
        (
            "vipd_vrrp_foreign_owner_adverts",
            "Priority-255 adverts from a source that does not own our VIPs",
            |i| i.router.counters.foreign_owner_adverts,
        ),
        (
            "vipd_vrrp_lower_priority_reannounced",
            "Lower-priority adverts heard as master that made us announce our VIPs again",
            |i| i.router.counters.lower_priority_reannounced,
        ),
    ];
    for (name, help, f) in counters {
        o.counter(name, help, insts.iter().map(|i| (inst(i), f(i))))?;
    }
    o.counter(
        "vipd_vrrp_transitions",
        "State changes by from, to and reason (reason: the cause's name, e.g. master_down_timer)",
        obs.transitions
            .iter()
            .filter(|((i, ..), _)| known(i))
            .map(|((i, from, to, reason), n)| {
                (
                    vec![
                        ("vrrp_instance", i.as_str()),
                        ("from", *from),
                        ("to", *to),
                        ("reason", reason.as_str()),
                    ],
                    *n,
                )
            }),
    )?;
    o.counter(
        "vipd_vrrp_discards",
        "Received packets an instance discarded, per reason",
        insts.iter().flat_map(|i| {
            i.router.counters.discards.iter().map(|(reason, n)| {
                let mut l = inst(i);
                l.push(("reason", reason.as_str()));
                (l, *n)
            })
        }),
    )?;
    o.counter(
        "vipd_vrrp_interface_discards",
        "Received packets no instance could take (unknown VRID, undecodable), per reason",
        st.interface_discards
            .iter()
            .map(|(reason, n)| (vec![("reason", reason.as_str())], *n)),
    )?;
    o.histogram(
        "vipd_vrrp_failover_seconds",
        "Becoming master, by phase: vip_install (decision to VIPs in place), announce (VIPs in place to first gratuitous ARP/NA), total",
        obs.failover
            .iter()
            .filter(|((i, _), _)| known(i))
            .map(|((i, phase), h)| (vec![("vrrp_instance", i.as_str()), ("phase", phase.name())], h)),
    )?;
    o.counter(
        "vipd_vrrp_no_master_seconds",
        "Seconds this node knew of no master for the instance: not master itself, and no live master heard (init, fault, backup before the first advert or after a priority-0 advert)",
        obs.no_master_seconds
            .iter()
            .filter(|(i, _)| known(i))
            .map(|(i, s)| (vec![("vrrp_instance", i.as_str())], *s)),
    )
}

fn backend<'a>(vs: &'a VirtualServerStatus, b: &'a str) -> Labels<'a> {
    vec![("virtual_server", vs.name.as_str()), ("backend", b)]
}

/// Reads one value of a backend.
type BackendValue = fn(&BackendStatus) -> u64;

fn servers(o: &mut Out, vss: &[VirtualServerStatus], obs: &Observed) -> fmt::Result {
    o.gauge(
        "vipd_virtual_server_serving",
        "1 while the virtual server accepts clients (its VRRP instance is master)",
        vss.iter().map(|vs| (vsl(vs), u64::from(vs.serving))),
    )?;
    o.gauge(
        "vipd_virtual_server_active_connections",
        "Client connections (TCP) or flows (UDP) open now",
        vss.iter().map(|vs| (vsl(vs), vs.active_connections)),
    )?;
    // Backend addresses as label values, formatted once.
    let addrs: Vec<(&VirtualServerStatus, &BackendStatus, String)> = vss
        .iter()
        .flat_map(|vs| vs.backends.iter().map(move |b| (vs, b, b.address.to_string())))
        .collect();
    o.gauge(
        "vipd_backend_up",
        "1 while the backend is healthy (up), 0 when down or not yet checked",
        addrs
            .iter()
            .map(|(vs, b, a)| (backend(vs, a), u64::from(b.health == Health::Up))),
    )?;
    o.gauge(
        "vipd_backend_health",
        "1 for the backend's current health (unknown, up, down), 0 for the others",
        addrs.iter().flat_map(|(vs, b, a)| {
            [Health::Unknown, Health::Up, Health::Down].map(|h| {
                let mut l = backend(vs, a);
                l.push(("health", health_name(h)));
                (l, u64::from(b.health == h))
            })
        }),
    )?;
    o.gauge(
        "vipd_backend_active_connections",
        "Connections (TCP) or flows (UDP) to the backend open now",
        addrs.iter().map(|(vs, b, a)| (backend(vs, a), b.active_connections)),
    )?;
    let counters: [(&str, &str, BackendValue); 2] = [
        (
            "vipd_backend_connections",
            "Connections (TCP) or flows (UDP) opened to the backend",
            |b| b.total_connections,
        ),
        (
            "vipd_backend_passive_failures",
            "Connections to the backend that failed in the data plane (passive health)",
            |b| b.failed_connects,
        ),
    ];
    for (name, help, f) in counters {
        o.counter(name, help, addrs.iter().map(|(vs, b, a)| (backend(vs, a), f(b))))?;
    }
    o.counter(
        "vipd_backend_bytes",
        "Bytes relayed: direction=in from clients to the backend, direction=out from the backend to clients",
        addrs.iter().flat_map(|(vs, b, a)| {
            [("in", b.bytes_in), ("out", b.bytes_out)].map(|(d, n)| {
                let mut l = backend(vs, a);
                l.push(("direction", d));
                (l, n)
            })
        }),
    )?;
    let running: std::collections::BTreeSet<(&str, SocketAddr)> = vss
        .iter()
        .flat_map(|v| v.backends.iter().map(move |b| (v.name.as_str(), b.address)))
        .collect();
    let present = |vs: &str, a: &SocketAddr| running.contains(&(vs, *a));
    let checks: Vec<(&str, String, &str, _)> = obs
        .checks
        .iter()
        .filter(|((vs, a, _), _)| present(vs, a))
        .map(|((vs, a, ok), h)| (vs.as_str(), a.to_string(), if *ok { "ok" } else { "failed" }, h))
        .collect();
    o.histogram(
        "vipd_backend_check_duration_seconds",
        "Health-check latency, by result (ok or failed; a timeout is a failed check)",
        checks.iter().map(|(vs, a, r, h)| {
            (
                vec![("virtual_server", *vs), ("backend", a.as_str()), ("result", *r)],
                *h,
            )
        }),
    )
}

fn vsl(vs: &VirtualServerStatus) -> Labels<'_> {
    vec![("virtual_server", vs.name.as_str())]
}

fn health_name(h: Health) -> &'static str {
    match h {
        Health::Unknown => "unknown",
        Health::Up => "up",
        Health::Down => "down",
    }
}

/// Reads one counter of a virtual server.
type ServerCounter = fn(&VirtualServerStatus) -> u64;

/// UDP drop counters per virtual server.
fn udp(o: &mut Out, vss: &[VirtualServerStatus]) -> fmt::Result {
    let counters: [(&str, &str, ServerCounter); 4] = [
        (
            "vipd_udp_dropped_no_backend",
            "Datagrams dropped: no backend available",
            |v| v.udp_dropped_no_backend,
        ),
        (
            "vipd_udp_kernel_drops",
            "Datagrams the kernel dropped on the VIP socket (receive queue full)",
            |v| v.udp_kernel_drops,
        ),
        (
            "vipd_udp_send_errors",
            "Datagrams not sent to a backend or back to a client",
            |v| v.udp_send_errors,
        ),
        ("vipd_udp_flows_evicted", "Flows evicted at udp_max_flows", |v| {
            v.udp_flows_evicted
        }),
    ];
    for (name, help, f) in counters {
        o.counter(
            name,
            help,
            vss.iter()
                .filter(|v| v.protocol == Protocol::Udp)
                .map(|vs| (vec![("virtual_server", vs.name.as_str())], f(vs))),
        )?;
    }
    Ok(())
}

/// TCP refusals by cause, aborted streams and suppressed passive ejections per virtual server.
fn tcp(o: &mut Out, vss: &[VirtualServerStatus]) -> fmt::Result {
    let tcp: Vec<&VirtualServerStatus> = vss.iter().filter(|v| v.protocol == Protocol::Tcp).collect();
    o.counter(
        "vipd_tcp_rejected",
        "Clients refused, per reason",
        tcp.iter().flat_map(|vs| {
            let c = &vs.streams;
            [
                ("cap", c.rejected_at_cap),
                ("no_backend", c.rejected_no_backend),
                ("local_connect_error", c.local_connect_errors),
                ("fd_exhausted", c.rejected_fd_exhausted),
                ("first_byte_timeout", c.first_byte_timeouts),
            ]
            .map(|(reason, n)| (vec![("virtual_server", vs.name.as_str()), ("reason", reason)], n))
        }),
    )?;
    o.counter(
        "vipd_tcp_aborted",
        "Established streams ended with a RST (mastership lost, maint, backend down, relay error)",
        tcp.iter()
            .map(|vs| (vec![("virtual_server", vs.name.as_str())], vs.streams.aborted)),
    )?;
    o.counter(
        "vipd_passive_ejections_suppressed",
        "Passive ejections refused by passive.max_ejection_percent",
        tcp.iter().map(|vs| {
            (
                vec![("virtual_server", vs.name.as_str())],
                vs.passive_ejections_suppressed,
            )
        }),
    )
}

/// Reads one count of an endpoint's clients.
type ClientValue = fn(&ClientStats) -> u64;

/// Clients of the control socket and of this endpoint turned away or cut off.
fn endpoints(o: &mut Out, st: &Status) -> fmt::Result {
    let eps = [("control", st.control_clients()), ("metrics", st.metrics_clients())];
    let series: [(&str, &str, ClientValue); 3] = [
        (
            "vipd_endpoint_clients_refused",
            "Clients closed at once: every slot busy",
            |c| c.refused,
        ),
        (
            "vipd_endpoint_clients_aborted",
            "Clients cut off: silent or slow past the timeout, or evicted for a newer one",
            |c| c.aborted,
        ),
        (
            "vipd_endpoint_accept_errors",
            "accept() failures, each followed by a back-off",
            |c| c.accept_errors,
        ),
    ];
    for (name, help, f) in series {
        o.counter(name, help, eps.iter().map(|(ep, c)| (vec![("endpoint", *ep)], f(c))))?;
    }
    Ok(())
}

/// The bound metrics listener, its client counters and the observer whose book it shows.
pub struct MetricsServer {
    listener: TcpListener,
    counters: Arc<ClientCounters>,
    obs: Observer,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<MetricsServer> {
        Ok(MetricsServer {
            listener: TcpListener::bind(addr).await?,
            counters: Arc::default(),
            obs: Observer::default(),
        })
    }

    /// Show this observer's book and readiness (the daemon's; a fresh one by default).
    pub fn with_observer(mut self, obs: Observer) -> MetricsServer {
        self.obs = obs;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Refused, aborted and failed-accept counts, for the status.
    pub fn counters(&self) -> Arc<ClientCounters> {
        self.counters.clone()
    }

    /// Serve until the process ends.
    pub async fn run(self, tx: mpsc::Sender<Envelope>) {
        let gate = Gate::new(MAX_CLIENTS, self.counters.clone());
        let mut backoff = AcceptBackoff::new();
        loop {
            let s = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    backoff.failed("metrics endpoint", &e, &self.counters).await;
                    continue;
                }
            };
            backoff.success();
            let Some(ticket) = gate.admit().await else {
                refuse(
                    s,
                    http_response("503 Service Unavailable", TEXT, "too many clients\n").as_bytes(),
                );
                continue;
            };
            let tx = tx.clone();
            let counters = self.counters.clone();
            tokio::spawn(handle_client(s, ticket, tx, counters, self.obs.clone()));
        }
    }
}

/// Serve `/metrics` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, tx: mpsc::Sender<Envelope>) -> std::io::Result<()> {
    MetricsServer::bind(addr).await?.run(tx).await;
    Ok(())
}

/// Read until the end of the request head, `MAX_HEAD` bytes or EOF.
async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    buf.truncate(n);
    buf
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The path of a `GET` request line, without its query; `None` for anything else.
fn get_path(head: &[u8]) -> Option<&str> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    (method == "GET").then(|| target.split('?').next().unwrap_or(target))
}

async fn handle_client(
    mut s: TcpStream,
    mut ticket: Ticket,
    tx: mpsc::Sender<Envelope>,
    counters: Arc<ClientCounters>,
    obs: Observer,
) {
    let head = match ticket
        .while_silent(tokio::time::timeout(CLIENT_TIMEOUT, read_head(&mut s)))
        .await
    {
        None => return,
        Some(Err(_)) => {
            counters.abort();
            return;
        }
        Some(Ok(h)) => h,
    };
    let (code, ctype, body) = match get_path(&head) {
        Some("/metrics" | "/") => {
            let (code, body) = scrape(&tx, &obs).await;
            let ctype = if code.starts_with("200") {
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
            } else {
                TEXT
            };
            (code, ctype, body)
        }
        Some("/health") => {
            let (code, body) = health(&tx, &obs).await;
            (code, TEXT, body)
        }
        Some("/ready") => {
            let (code, body) = ready(&obs);
            (code, TEXT, body)
        }
        Some(_) => ("404 Not Found", TEXT, "try /metrics, /health or /ready\n".to_string()),
        None => ("405 Method Not Allowed", TEXT, "only GET\n".to_string()),
    };
    let resp = http_response(code, ctype, &body);
    if tokio::time::timeout(CLIENT_TIMEOUT, s.write_all(resp.as_bytes()))
        .await
        .is_err()
    {
        counters.abort();
    }
}

/// Ask the event loop for its status within `limit`.
async fn ask_status(tx: &mpsc::Sender<Envelope>, limit: Duration) -> Result<Status, (&'static str, String)> {
    let unavailable = ("503 Service Unavailable", "shutting down\n".to_string());
    let (otx, orx) = oneshot::channel();
    if tx.send((Request::Status {}, otx)).await.is_err() {
        return Err(unavailable);
    }
    match tokio::time::timeout(limit, orx).await {
        Ok(Ok(resp)) => resp.status.ok_or(("500 Internal Server Error", "no status\n".into())),
        Ok(Err(_)) => Err(unavailable),
        Err(_) => Err((
            "503 Service Unavailable",
            format!("the event loop did not answer within {limit:?}\n"),
        )),
    }
}

/// Ask the daemon for its status and render it with the observer's book.
async fn scrape(tx: &mpsc::Sender<Envelope>, obs: &Observer) -> (&'static str, String) {
    match ask_status(tx, CLIENT_TIMEOUT).await {
        Ok(st) => ("200 OK", render_with(&st, &obs.snapshot())),
        Err(e) => e,
    }
}

/// `/health`: the process is alive and its event loop answers a status request in time.
async fn health(tx: &mpsc::Sender<Envelope>, obs: &Observer) -> (&'static str, String) {
    if obs.stage() == Stage::Stopping {
        return ("503 Service Unavailable", "stopping\n".into());
    }
    match ask_status(tx, HEALTH_TIMEOUT).await {
        Ok(_) => ("200 OK", "ok\n".into()),
        Err(e) => e,
    }
}

/// `/ready`: start-up is complete (config loaded, sockets bound, instances and
/// virtual servers started) and the daemon is not stopping.
fn ready(obs: &Observer) -> (&'static str, String) {
    match obs.stage() {
        Stage::Ready => ("200 OK", "ready\n".into()),
        Stage::Starting => (
            "503 Service Unavailable",
            "starting: config loaded; sockets, instances and virtual servers not all started yet\n".into(),
        ),
        Stage::Stopping => ("503 Service Unavailable", "stopping: releasing VIPs\n".into()),
    }
}

fn http_response(code: &str, ctype: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_parsed_strictly() {
        assert_eq!(get_path(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Some("/metrics"));
        assert_eq!(get_path(b"GET /ready?verbose=1 HTTP/1.0\r\n\r\n"), Some("/ready"));
        assert_eq!(get_path(b"POST /metrics HTTP/1.1\r\n\r\n"), None);
        assert_eq!(get_path(b"GET"), None);
        assert_eq!(get_path(b"\xff\xfe"), None);
    }
}
