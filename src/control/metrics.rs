//! Prometheus text exposition on `global.metrics` (e.g. 127.0.0.1:9650).
//! Serves `GET /metrics` from a status snapshot taken through the same
//! channel the control socket uses, so there is one source of truth.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::{Envelope, Request, Status};

/// Render a status snapshot as Prometheus text format 0.0.4.
pub fn render(st: &Status) -> String {
    let mut o = String::new();
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
    let _ = writeln!(
        o,
        "# HELP vipd_vrrp_state 1 for the current state of each instance.\n# TYPE vipd_vrrp_state gauge"
    );
    for i in &st.instances {
        for s in ["init", "backup", "master", "fault"] {
            let v = u8::from(i.router.state.name() == s);
            let _ = writeln!(o, "vipd_vrrp_state{{instance=\"{}\",state=\"{s}\"}} {v}", i.router.name);
        }
    }
    let _ = writeln!(o, "# TYPE vipd_vrrp_priority gauge");
    for i in &st.instances {
        let _ = writeln!(
            o,
            "vipd_vrrp_priority{{instance=\"{}\"}} {}",
            i.router.name, i.router.effective_priority
        );
    }
    let _ = writeln!(o, "# TYPE vipd_vrrp_adverts_sent_total counter");
    for i in &st.instances {
        let _ = writeln!(
            o,
            "vipd_vrrp_adverts_sent_total{{instance=\"{}\"}} {}",
            i.router.name, i.router.counters.adverts_sent
        );
    }
    let _ = writeln!(o, "# TYPE vipd_vrrp_adverts_received_total counter");
    for i in &st.instances {
        let _ = writeln!(
            o,
            "vipd_vrrp_adverts_received_total{{instance=\"{}\"}} {}",
            i.router.name, i.router.counters.adverts_received
        );
    }
    let _ = writeln!(o, "# TYPE vipd_vrrp_transitions_total counter");
    for i in &st.instances {
        let _ = writeln!(
            o,
            "vipd_vrrp_transitions_total{{instance=\"{}\"}} {}",
            i.router.name, i.router.counters.transitions
        );
    }
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
    let _ = writeln!(o, "# TYPE vipd_backend_up gauge");
    for vs in &st.virtual_servers {
        let name = vs.get("name").and_then(|v| v.as_str()).unwrap_or("");
        if let Some(bs) = vs.get("backends").and_then(|b| b.as_array()) {
            for b in bs {
                let addr = b.get("address").and_then(|v| v.as_str()).unwrap_or("");
                let up = b
                    .get("health")
                    .and_then(|v| v.as_str())
                    .map(|h| h.eq_ignore_ascii_case("up"))
                    .unwrap_or(false);
                let _ = writeln!(
                    o,
                    "vipd_backend_up{{virtual_server=\"{name}\",backend=\"{addr}\"}} {}",
                    u8::from(up)
                );
                for key in ["active_connections", "total_connections", "bytes_in", "bytes_out"] {
                    if let Some(n) = b.get(key).and_then(|v| v.as_u64()) {
                        let _ = writeln!(
                            o,
                            "vipd_backend_{key}{{virtual_server=\"{name}\",backend=\"{addr}\"}} {n}"
                        );
                    }
                }
            }
        }
    }
    o
}

/// Serve `/metrics` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, tx: mpsc::Sender<Envelope>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read the request head (bounded size and time).
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                while n < buf.len() {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if head.is_err() {
                return;
            }
            let ok_path = buf[..n].starts_with(b"GET /metrics ") || buf[..n].starts_with(b"GET / ");
            let (code, body) = if !ok_path {
                ("404 Not Found", "try /metrics\n".to_string())
            } else {
                let (otx, orx) = oneshot::channel();
                match tx.send((Request::Status {}, otx)).await {
                    Ok(()) => match orx.await {
                        Ok(resp) => match resp.status {
                            Some(st) => ("200 OK", render(&st)),
                            None => ("500 Internal Server Error", "no status\n".into()),
                        },
                        Err(_) => ("503 Service Unavailable", "shutting down\n".into()),
                    },
                    Err(_) => ("503 Service Unavailable", "shutting down\n".into()),
                }
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}
