//! vipctl: inspect and steer a running vipd through its control socket.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use vipd::control::{self, InstanceStatus, Request, Response, Status, VirtualServerStatus};

#[derive(Parser, Debug)]
#[command(
    name = "vipctl",
    version,
    about = "Inspect and control a running vipd",
    after_long_help = "Permissions: the control socket is 0660, group vipd; `status` is answered to anyone who \
can connect, changes (reload, backend) need root, the daemon's user or group vipd (add operators with \
`adduser NAME vipd`)."
)]
struct Cli {
    /// Control socket of the daemon.
    #[arg(long, global = true, env = "VIPCTL_SOCKET", default_value = vipd::config::DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
    /// Seconds to wait for the daemon.
    #[arg(long, global = true, default_value_t = 5.0)]
    timeout: f64,
    /// Write the man page and shell completions into DIR, then exit (packaging).
    #[arg(long, value_name = "DIR", hide = true, exclusive = true)]
    generate_assets: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show every VRRP instance and virtual server.
    Status {
        /// Machine-readable JSON (includes every counter).
        #[arg(long)]
        json: bool,
    },
    /// Change a backend's admin state at runtime.
    Backend {
        /// ready, drain (no new connections, existing ones finish) or maint (close its connections).
        #[arg(value_parser = ["ready", "drain", "maint"])]
        state: String,
        /// Virtual server name (the NAME of [virtual_server.NAME]).
        virtual_server: String,
        /// Backend address as in real_server, e.g. 198.51.100.11:6000.
        address: String,
    },
    /// Reload the configuration file (like SIGHUP); a bad file keeps the old config.
    Reload,
    /// Hand an instance's VIPs to a backup without a gap (keeps them until the
    /// successor advertises), then stay BACKUP at priority 1 until `promote`.
    /// --timeout: how long to wait for a successor (default 5 s).
    Demote {
        instance: String,
        /// Return when the successor holds the VIPs, with the measured times.
        #[arg(long)]
        wait: bool,
    },
    /// Undo `demote`: the configured priority again.
    Promote { instance: String },
    /// Convert a keepalived.conf to vipd's TOML (stdout, or -o FILE).
    ///
    /// Exit 0: all converted; 3: something was not (listed on stderr and as
    /// comments); 1: parse error. See docs/keepalived-migration.md.
    ImportKeepalived(vipd::keepalived::cli::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(cmd) = &cli.cmd else {
        if let Some(dir) = &cli.generate_assets {
            return vipd::assets::generate_and_report(Cli::command(), "8", dir);
        }
        let _ = Cli::command().print_help();
        return ExitCode::from(2);
    };
    if !(cli.timeout.is_finite() && cli.timeout > 0.0 && cli.timeout <= 3600.0) {
        eprintln!("vipctl: --timeout must be a number of seconds in (0, 3600]");
        return ExitCode::from(2);
    }
    let timeout = Duration::from_secs_f64(cli.timeout);
    let (req, json) = match cmd {
        Cmd::ImportKeepalived(args) => return vipd::keepalived::cli::run(args),
        Cmd::Status { json } => (Request::Status {}, *json),
        Cmd::Backend {
            state,
            virtual_server,
            address,
        } => (
            Request::Backend {
                virtual_server: virtual_server.clone(),
                address: address.clone(),
                state: state.clone(),
            },
            false,
        ),
        Cmd::Reload => (Request::Reload {}, false),
        Cmd::Demote { instance, wait } => (
            Request::Demote {
                instance: instance.clone(),
                wait: *wait,
                timeout_ms: Some(timeout.as_millis() as u64),
            },
            false,
        ),
        Cmd::Promote { instance } => (
            Request::Promote {
                instance: instance.clone(),
            },
            false,
        ),
    };
    // demote --wait: the answer comes after the handover (at most --timeout).
    let wait = if matches!(cmd, Cmd::Demote { wait: true, .. }) {
        timeout + Duration::from_secs(2)
    } else {
        timeout
    };
    let resp = match control::call(&cli.socket, &req, wait) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vipctl: {e}");
            return ExitCode::from(1);
        }
    };
    print_response(&resp, json)
}

fn print_response(resp: &Response, json: bool) -> ExitCode {
    if !resp.ok {
        eprintln!("vipctl: {}", resp.error.as_deref().unwrap_or("request failed"));
        return ExitCode::from(1);
    }
    if let Some(st) = &resp.status {
        if json {
            match serde_json::to_string_pretty(st) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("vipctl: {e}");
                    return ExitCode::from(1);
                }
            }
        } else {
            print!("{}", render_status(st));
        }
    }
    if let Some(m) = &resp.message {
        println!("{m}");
    }
    ExitCode::SUCCESS
}

fn fmt_interval(us: u64) -> String {
    if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else {
        format!("{}ms", us / 1000)
    }
}

/// Human-readable status.
fn render_status(st: &Status) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "vipd {}  config {}  up {}s  reloads {} (failed {})",
        st.router_id,
        st.config_file.display(),
        st.uptime_s,
        st.reloads,
        st.reload_failures
    );
    let _ = writeln!(o, "\nVRRP instances:");
    let _ = writeln!(
        o,
        "  {:<16} {:>4} {:<8} {:<7} {:>9} {:<26} {:>8}  VIPs",
        "NAME", "VRID", "IFACE", "STATE", "PRIO", "MASTER", "ADVERT"
    );
    for i in &st.instances {
        render_instance(&mut o, i);
    }
    if !st.virtual_servers.is_empty() {
        let _ = writeln!(o, "\nVirtual servers:");
        for vs in &st.virtual_servers {
            render_vs(&mut o, vs);
        }
    }
    o
}

fn render_instance(o: &mut String, i: &InstanceStatus) {
    use std::fmt::Write;
    let r = &i.router;
    let prio = if r.base_priority == r.effective_priority {
        format!("{}", r.base_priority)
    } else {
        format!("{}/{}", r.effective_priority, r.base_priority)
    };
    let master = match (r.master_addr, r.master_priority) {
        (Some(a), Some(p)) => format!("{a} ({p})"),
        (Some(a), None) => a.to_string(),
        _ => "-".to_string(),
    };
    let vips: Vec<String> = r.vips.iter().map(|v| v.to_string()).collect();
    let _ = writeln!(
        o,
        "  {:<16} {:>4} {:<8} {:<7} {:>9} {:<26} {:>8}  {}",
        r.name,
        r.vrid,
        i.interface,
        r.state.name(),
        prio,
        master,
        fmt_interval(r.master_adver_interval_us),
        vips.join(",")
    );
    let c = &r.counters;
    let discards: u64 = c.discards.values().sum();
    let mut line = format!(
        "      adverts sent {} received {}  transitions {}  discarded {}",
        c.adverts_sent, c.adverts_received, c.transitions, discards
    );
    if discards > 0 {
        let parts: Vec<String> = c
            .discards
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let _ = write!(line, " ({})", parts.join(" "));
    }
    if i.vips_readded > 0 {
        let _ = write!(line, "  vips re-added {}", i.vips_readded);
    }
    if !i.link_up {
        line.push_str("  LINK DOWN");
    }
    if r.demoted {
        line.push_str("  DEMOTED (vipctl promote)");
    }
    if let Some(g) = &i.sync_group {
        let _ = write!(line, "  sync group {g}");
    }
    let _ = writeln!(o, "{line}");
    if let Some(t) = &r.last_transition {
        let _ = writeln!(
            o,
            "      last {} -> {} ({}), {:.1} s after start",
            t.from.name(),
            t.to.name(),
            t.reason,
            t.at_us as f64 / 1e6
        );
    }
    if !i.trackers.is_empty() {
        let parts: Vec<String> = i
            .trackers
            .iter()
            .map(|t| {
                let mut s = format!("{} {} {}", t.kind, t.name, t.state);
                if let Some(v) = t.value {
                    s.push_str(&format!("={v}"));
                }
                match (t.fault, t.contribution) {
                    (true, _) => s.push_str(" FAULT"),
                    (false, 0) => {}
                    (false, c) => s.push_str(&format!(" {c:+}")),
                }
                s
            })
            .collect();
        let _ = writeln!(o, "      tracking: {}", parts.join(", "));
    }
    if i.vip_add_failures + i.vip_remove_failures > 0 {
        let _ = writeln!(
            o,
            "      VIP add failures {}  remove failures {}  last error: {}",
            i.vip_add_failures,
            i.vip_remove_failures,
            i.vip_last_error.as_deref().unwrap_or("-")
        );
    }
}

/// An enum as the JSON status names it (e.g. `wrr`, `maint`, `up`).
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

fn render_vs(o: &mut String, vs: &VirtualServerStatus) {
    use std::fmt::Write;
    let _ = writeln!(
        o,
        "  {} {} {} {}  vrrp {}  serving {}  active {}",
        vs.name,
        wire_name(&vs.protocol),
        vs.listen,
        wire_name(&vs.lb_algo),
        or_dash(vs.vrrp_instance.as_deref()),
        vs.serving,
        vs.active_connections
    );
    let _ = writeln!(
        o,
        "      {:<24} {:>6} {:<6} {:<8} {:>7} {:>8} {:>12} {:>12}  LAST",
        "BACKEND", "WEIGHT", "ADMIN", "HEALTH", "ACTIVE", "TOTAL", "BYTES_IN", "BYTES_OUT"
    );
    for b in &vs.backends {
        let _ = writeln!(
            o,
            "      {:<24} {:>6} {:<6} {:<8} {:>7} {:>8} {:>12} {:>12}  {}",
            b.address.to_string(),
            b.weight,
            wire_name(&b.admin),
            wire_name(&b.health),
            b.active_connections,
            b.total_connections,
            b.bytes_in,
            b.bytes_out,
            or_dash(b.last_change.as_deref())
        );
    }
}
