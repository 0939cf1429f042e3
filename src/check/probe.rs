//! The probes: tcp connect, http GET, exec. Each returns a [`CheckResult`]
//! and never takes longer than its timeout (plus the time to reap a killed
//! child).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderValue, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::process::Command;

use super::{CheckResult, ProbeKind};

/// Most body bytes an http probe reads.
pub const HTTP_BODY_LIMIT: usize = 4096;

/// "500ms", "2s", "1.5s", "250us".
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us % 1000 != 0 {
        format!("{us}us")
    } else if us % 1_000_000 == 0 && us > 0 {
        format!("{}s", us / 1_000_000)
    } else if us >= 1_000_000 && us % 100_000 == 0 {
        format!("{}.{}s", us / 1_000_000, (us % 1_000_000) / 100_000)
    } else {
        format!("{}ms", us / 1000)
    }
}

/// A short, stable description of a socket error ("connection refused").
pub fn io_error_detail(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::TimedOut => "timed out".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::AddrNotAvailable => "address not available".into(),
        K::UnexpectedEof => "connection closed".into(),
        _ => e.to_string(),
    }
}

fn fail(detail: impl Into<String>) -> CheckResult {
    CheckResult {
        ok: false,
        detail: detail.into(),
    }
}

fn with_port(target: SocketAddr, port: Option<u16>) -> SocketAddr {
    let mut a = target;
    if let Some(p) = port {
        a.set_port(p);
    }
    a
}

/// Run the probe of `kind` against backend `target`.
pub async fn run(kind: &ProbeKind, target: SocketAddr, timeout: Duration) -> CheckResult {
    match kind {
        ProbeKind::Tcp { port } => tcp(with_port(target, *port), timeout).await,
        ProbeKind::Http {
            port,
            path,
            expect_status,
            host,
        } => http(with_port(target, *port), path, *expect_status, host.as_deref(), timeout).await,
        ProbeKind::Exec { command } => exec(command, target, timeout).await,
    }
}

/// Connect within `timeout`; ok once the handshake completes.
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> CheckResult {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => fail(format!("timeout after {}", fmt_duration(timeout))),
        Ok(Err(e)) => fail(io_error_detail(&e)),
        Ok(Ok(_stream)) => CheckResult {
            ok: true,
            detail: "connected".into(),
        },
    }
}

/// `GET path` over HTTP/1.1 with `Host: host` (default: the address); ok if
/// the status is within `expect` (inclusive). Reads at most
/// [`HTTP_BODY_LIMIT`] bytes of the body. The whole exchange is bounded by `timeout`.
pub async fn http(
    addr: SocketAddr,
    path: &str,
    expect: (u16, u16),
    host: Option<&str>,
    timeout: Duration,
) -> CheckResult {
    match tokio::time::timeout(timeout, http_inner(addr, path, expect, host)).await {
        Err(_) => fail(format!("timeout after {}", fmt_duration(timeout))),
        Ok(r) => r,
    }
}

async fn http_inner(addr: SocketAddr, path: &str, expect: (u16, u16), host: Option<&str>) -> CheckResult {
    let host = host.map(str::to_string).unwrap_or_else(|| addr.to_string());
    let host = match HeaderValue::from_str(&host) {
        Ok(h) => h,
        Err(_) => return fail(format!("invalid host header {host:?}")),
    };
    let req = match Request::get(path)
        .header(HOST, host)
        .header(USER_AGENT, "vipd-check")
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return fail(format!("invalid request path {path:?}: {e}")),
    };
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return fail(io_error_detail(&e)),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => return fail(format!("http handshake: {e}")),
    };
    let work = async move {
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => return fail(format!("http error: {e}")),
        };
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut read = 0usize;
        while read < HTTP_BODY_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
        CheckResult {
            ok: (expect.0..=expect.1).contains(&status),
            detail: format!("http {status}"),
        }
    };
    tokio::pin!(work);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        r = &mut work => r,
        _ = &mut conn => work.await,
    }
}

/// Substitute "{address}", "{ip}" and "{port}" in one argument.
pub fn substitute(arg: &str, target: SocketAddr) -> String {
    arg.replace("{address}", &target.to_string())
        .replace("{ip}", &target.ip().to_string())
        .replace("{port}", &target.port().to_string())
}

/// Run `command` (argv, no shell) with placeholders substituted; ok on exit
/// status 0. On timeout the child's whole process group is killed.
pub async fn exec(command: &[String], target: SocketAddr, timeout: Duration) -> CheckResult {
    let argv: Vec<String> = command.iter().map(|a| substitute(a, target)).collect();
    let Some((prog, args)) = argv.split_first() else {
        return fail("empty command");
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {prog}: {}", io_error_detail(&e))),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Err(_) => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                // The child leads its own group (process_group(0)): kill it and its children.
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            fail(format!("timeout after {}", fmt_duration(timeout)))
        }
        Ok(Err(e)) => fail(format!("wait for {prog}: {e}")),
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(0), _) => CheckResult {
                    ok: true,
                    detail: "exit status 0".into(),
                },
                (Some(c), _) => fail(format!("exit status {c}")),
                (None, Some(s)) => fail(format!("killed by signal {s}")),
                (None, None) => fail(format!("{status}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_config() {
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_micros(250)), "250us");
    }

    #[test]
    fn placeholders_are_substituted() {
        let v4: SocketAddr = "198.51.100.11:6000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:6000".parse().unwrap();
        assert_eq!(substitute("{address}", v4), "198.51.100.11:6000");
        assert_eq!(substitute("--host={ip}:{port}", v4), "--host=198.51.100.11:6000");
        assert_eq!(substitute("{address}", v6), "[2001:db8::1]:6000");
        assert_eq!(substitute("{ip}", v6), "2001:db8::1");
    }
}
