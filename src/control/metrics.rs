//! Prometheus text exposition on `global.metrics` (e.g. 127.0.0.1:9650).
//! Serves `GET /metrics` from a status snapshot taken through the same
//! channel the control socket uses, so there is one source of truth.
//! At most `MAX_CLIENTS` clients, `CLIENT_TIMEOUT` to send the request and to take the answer.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::limit::{refuse, AcceptBackoff, ClientCounters, Gate, Ticket};
use super::{ClientStats, Envelope, InstanceStatus, Request, Status, VirtualServerStatus};
use crate::balance::{BackendStatus, Health};

pub const MAX_CLIENTS: usize = 16;
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_HEAD: usize = 4096;

/// Render a status snapshot as Prometheus text format 0.0.4.
pub fn render(st: &Status) -> String {
    let mut o = String::new();
    render_daemon(&mut o, st);
    render_vrrp(&mut o, st);
    render_backends(&mut o, &st.virtual_servers);
    render_udp(&mut o, &st.virtual_servers);
    render_tcp(&mut o, &st.virtual_servers);
    render_endpoints(&mut o, st);
    o
}

fn render_daemon(o: &mut String, st: &Status) {
    let _ = writeln!(
        o,
        "# HELP vipd_up 1 while the daemon runs.\n# TYPE vipd_up gauge\nvipd_up 1"
    );
    let _ = writeln!(
        o,
        "# TYPE vipd_reloads_total counter\nvipd_reloads_total {}",
        st.reloads
    );
    let _ = writeln!(
        o,
        "# TYPE vipd_reload_failures_total counter\nvipd_reload_failures_total {}",
        st.reload_failures
    );
}

/// Reads one counter of an instance.
type InstanceCounter = fn(&InstanceStatus) -> u64;

/// One line per instance of `metric`, valued by `f`.
fn per_instance(o: &mut String, metric: &str, insts: &[InstanceStatus], f: impl Fn(&InstanceStatus) -> u64) {
    for i in insts {
        let _ = writeln!(o, "{metric}{{instance=\"{}\"}} {}", i.router.name, f(i));
    }
}

fn render_vrrp(o: &mut String, st: &Status) {
    let insts = &st.instances;
    let _ = writeln!(
        o,
        "# HELP vipd_vrrp_state 1 for the current state of each instance.\n# TYPE vipd_vrrp_state gauge"
    );
    for i in insts {
        for s in ["init", "backup", "master", "fault"] {
            let v = u8::from(i.router.state.name() == s);
            let _ = writeln!(o, "vipd_vrrp_state{{instance=\"{}\",state=\"{s}\"}} {v}", i.router.name);
        }
    }
    let _ = writeln!(o, "# TYPE vipd_vrrp_priority gauge");
    per_instance(o, "vipd_vrrp_priority", insts, |i| {
        u64::from(i.router.effective_priority)
    });
    let _ = writeln!(o, "# TYPE vipd_vrrp_adverts_sent_total counter");
    per_instance(o, "vipd_vrrp_adverts_sent_total", insts, |i| {
        i.router.counters.adverts_sent
    });
    let _ = writeln!(o, "# TYPE vipd_vrrp_adverts_received_total counter");
    per_instance(o, "vipd_vrrp_adverts_received_total", insts, |i| {
        i.router.counters.adverts_received
    });
    let _ = writeln!(o, "# TYPE vipd_vrrp_transitions_total counter");
    per_instance(o, "vipd_vrrp_transitions_total", insts, |i| {
        i.router.counters.transitions
    });
    let counters: [(&str, InstanceCounter); 6] = [
        ("vipd_vrrp_vips_readded_total", |i| i.vips_readded),
        ("vipd_vrrp_vip_add_failures_total", |i| i.vip_add_failures),
        ("vipd_vrrp_vip_remove_failures_total", |i| i.vip_remove_failures),
        ("vipd_vrrp_address_list_mismatch_total", |i| {
            i.router.counters.address_list_mismatch
        }),
        ("vipd_vrrp_foreign_owner_adverts_total", |i| {
            i.router.counters.foreign_owner_adverts
        }),
        ("vipd_vrrp_lower_priority_reannounced_total", |i| {
            i.router.counters.lower_priority_reannounced
        }),
    ];
    for (metric, f) in counters {
        let _ = writeln!(o, "# TYPE {metric} counter");
        per_instance(o, metric, insts, f);
    }
    render_discards(o, st);
}

fn render_discards(o: &mut String, st: &Status) {
    let _ = writeln!(o, "# HELP vipd_vrrp_discards_total Received packets discarded, per reason.\n# TYPE vipd_vrrp_discards_total counter");
    for i in &st.instances {
        for (reason, n) in &i.router.counters.discards {
            let _ = writeln!(
                o,
                "vipd_vrrp_discards_total{{instance=\"{}\",reason=\"{reason}\"}} {n}",
                i.router.name
            );
        }
    }
    for (reason, n) in &st.interface_discards {
        let _ = writeln!(o, "vipd_vrrp_discards_total{{instance=\"\",reason=\"{reason}\"}} {n}");
    }
}

fn render_backends(o: &mut String, vss: &[VirtualServerStatus]) {
    let _ = writeln!(o, "# TYPE vipd_backend_up gauge");
    for vs in vss {
        for b in &vs.backends {
            render_backend(o, &vs.name, b);
        }
    }
}

/// UDP drop counters per virtual server.
fn render_udp(o: &mut String, vss: &[VirtualServerStatus]) {
    let counters: [(&str, ServerCounter); 4] = [
        ("vipd_udp_dropped_no_backend_total", |v| v.udp_dropped_no_backend),
        ("vipd_udp_kernel_drops_total", |v| v.udp_kernel_drops),
        ("vipd_udp_send_errors_total", |v| v.udp_send_errors),
        ("vipd_udp_flows_evicted_total", |v| v.udp_flows_evicted),
    ];
    for (metric, f) in counters {
        let _ = writeln!(o, "# TYPE {metric} counter");
        for vs in vss.iter().filter(|v| v.protocol == crate::config::Protocol::Udp) {
            let _ = writeln!(o, "{metric}{{virtual_server=\"{}\"}} {}", vs.name, f(vs));
        }
    }
}

/// Reads one counter of a virtual server.
type ServerCounter = fn(&VirtualServerStatus) -> u64;

/// TCP refusals by cause, aborted streams and suppressed passive ejections
/// per virtual server.
fn render_tcp(o: &mut String, vss: &[VirtualServerStatus]) {
    let tcp: Vec<&VirtualServerStatus> = vss
        .iter()
        .filter(|v| v.protocol == crate::config::Protocol::Tcp)
        .collect();
    let _ = writeln!(
        o,
        "# HELP vipd_tcp_rejected_total Clients refused, per cause.\n# TYPE vipd_tcp_rejected_total counter"
    );
    for vs in &tcp {
        let c = &vs.streams;
        for (reason, n) in [
            ("cap", c.rejected_at_cap),
            ("no_backend", c.rejected_no_backend),
            ("local_connect_error", c.local_connect_errors),
            ("fd_exhausted", c.rejected_fd_exhausted),
            ("first_byte_timeout", c.first_byte_timeouts),
        ] {
            let _ = writeln!(
                o,
                "vipd_tcp_rejected_total{{virtual_server=\"{}\",reason=\"{reason}\"}} {n}",
                vs.name
            );
        }
    }
    let _ = writeln!(o, "# TYPE vipd_tcp_aborted_total counter");
    for vs in &tcp {
        let _ = writeln!(
            o,
            "vipd_tcp_aborted_total{{virtual_server=\"{}\"}} {}",
            vs.name, vs.streams.aborted
        );
    }
    let _ = writeln!(o, "# TYPE vipd_passive_ejections_suppressed_total counter");
    for vs in &tcp {
        let _ = writeln!(
            o,
            "vipd_passive_ejections_suppressed_total{{virtual_server=\"{}\"}} {}",
            vs.name, vs.passive_ejections_suppressed
        );
    }
}

fn render_backend(o: &mut String, vs: &str, b: &BackendStatus) {
    let labels = format!("{{virtual_server=\"{vs}\",backend=\"{}\"}}", b.address);
    let _ = writeln!(o, "vipd_backend_up{labels} {}", u8::from(b.health == Health::Up));
    let values = [
        ("active_connections", b.active_connections),
        ("total_connections", b.total_connections),
        ("bytes_in", b.bytes_in),
        ("bytes_out", b.bytes_out),
    ];
    for (key, n) in values {
        let _ = writeln!(o, "vipd_backend_{key}{labels} {n}");
    }
}

/// Clients of the control socket and of this endpoint turned away or cut off.
fn render_endpoints(o: &mut String, st: &Status) {
    let eps = [("control", st.control_clients()), ("metrics", st.metrics_clients())];
    let mut series = |name: &str, help: &str, f: fn(&ClientStats) -> u64| {
        let _ = writeln!(
            o,
            "# HELP vipd_endpoint_{name}_total {help}\n# TYPE vipd_endpoint_{name}_total counter"
        );
        for (ep, c) in &eps {
            let _ = writeln!(o, "vipd_endpoint_{name}_total{{endpoint=\"{ep}\"}} {}", f(c));
        }
    };
    series("clients_refused", "Clients closed at once: every slot busy.", |c| {
        c.refused
    });
    series(
        "clients_aborted",
        "Clients cut off: silent or slow past the timeout, or evicted for a newer one.",
        |c| c.aborted,
    );
    series(
        "accept_errors",
        "accept() failures, each followed by a back-off.",
        |c| c.accept_errors,
    );
}

/// The bound metrics listener and its client counters.
pub struct MetricsServer {
    listener: TcpListener,
    counters: Arc<ClientCounters>,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<MetricsServer> {
        Ok(MetricsServer {
            listener: TcpListener::bind(addr).await?,
            counters: Arc::default(),
        })
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
                    http_response("503 Service Unavailable", "too many clients\n").as_bytes(),
                );
                continue;
            };
            let tx = tx.clone();
            let counters = self.counters.clone();
            tokio::spawn(handle_client(s, ticket, tx, counters));
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

async fn handle_client(
    mut s: TcpStream,
    mut ticket: Ticket,
    tx: mpsc::Sender<Envelope>,
    counters: Arc<ClientCounters>,
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
    let ok_path = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET / ");
    let (code, body) = if ok_path {
        scrape(&tx).await
    } else {
        ("404 Not Found", "try /metrics\n".to_string())
    };
    let resp = http_response(code, &body);
    if tokio::time::timeout(CLIENT_TIMEOUT, s.write_all(resp.as_bytes()))
        .await
        .is_err()
    {
        counters.abort();
    }
}

/// Ask the daemon for its status and render it.
async fn scrape(tx: &mpsc::Sender<Envelope>) -> (&'static str, String) {
    let unavailable = ("503 Service Unavailable", "shutting down\n".to_string());
    let (otx, orx) = oneshot::channel();
    if tx.send((Request::Status {}, otx)).await.is_err() {
        return unavailable;
    }
    match tokio::time::timeout(CLIENT_TIMEOUT, orx).await {
        Ok(Ok(resp)) => match resp.status {
            Some(st) => ("200 OK", render(&st)),
            None => ("500 Internal Server Error", "no status\n".into()),
        },
        Ok(Err(_)) => unavailable,
        Err(_) => ("503 Service Unavailable", "the daemon did not answer in time\n".into()),
    }
}

fn http_response(code: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
