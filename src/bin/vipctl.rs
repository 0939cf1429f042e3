//! vipctl: inspect and steer a running vipd through its control socket.
//! Rendering lives in `vipd::control::render`; this file maps commands to
//! requests and outcomes to exit codes.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use vipd::control::watch::Received;
use vipd::control::{self, render, Request, Response, Status};

/// Exit status: all fine.
const OK: u8 = 0;
/// `status`: an instance in FAULT or a virtual server without a healthy
/// backend; other commands: the daemon refused the request.
const PROBLEM: u8 = 1;
/// The daemon could not be reached (or answered nonsense), or bad usage.
const NO_DAEMON: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "vipctl",
    version,
    about = "Inspect and control a running vipd",
    after_long_help = "Permissions: the control socket is 0660, group vipd; `status`, `explain` and `watch` are answered to anyone who \
can connect, changes (reload, backend) need root, the daemon's user or group vipd (add operators with \
`adduser NAME vipd`).

Exit status: 0 fine; 1 `status` found an instance in FAULT or a virtual server without a healthy \
backend, or the daemon refused the request; 2 the daemon could not be reached (or bad usage); \
import-keepalived has its own (see its help)."
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
    /// Show every VRRP instance and virtual server (exit 1 if one is in trouble).
    Status {
        /// Machine-readable JSON (includes every counter).
        #[arg(long)]
        json: bool,
    },
    /// Why an instance is in its state, with this priority: trackers, master
    /// seen, Master_Down countdown, preempt_delay, last transition, discards.
    Explain {
        /// Instance name (the NAME of [vrrp_instance.NAME]).
        instance: String,
        /// The instance's status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A snapshot, then every transition, priority and backend health change as it happens.
    Watch {
        /// One JSON object per line.
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
    /// A member of a vrrp_sync_group takes every member of its group along.
    /// --timeout: how long to wait for a successor (default 5 s).
    Demote {
        instance: String,
        /// Return when the successor holds the VIPs, with the measured times.
        #[arg(long)]
        wait: bool,
    },
    /// Undo `demote`: the configured priority again (the whole sync group).
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
        Cmd::Explain { json, .. } => (Request::Status {}, *json),
        Cmd::Watch { json } => return watch(&cli, timeout, *json),
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
            return ExitCode::from(NO_DAEMON);
        }
    };
    print_response(cmd, &resp, json)
}

fn print_response(cmd: &Cmd, resp: &Response, json: bool) -> ExitCode {
    if !resp.ok {
        eprintln!("vipctl: {}", resp.error.as_deref().unwrap_or("request failed"));
        return ExitCode::from(PROBLEM);
    }
    match (cmd, &resp.status) {
        (Cmd::Explain { instance, .. }, Some(st)) => explain(st, instance, json),
        (_, Some(st)) => status(st, json),
        _ => message(resp),
    }
}

fn message(resp: &Response) -> ExitCode {
    if let Some(m) = &resp.message {
        println!("{m}");
    }
    ExitCode::from(OK)
}

fn print_json<T: serde::Serialize>(v: &T) -> bool {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            true
        }
        Err(e) => {
            eprintln!("vipctl: {e}");
            false
        }
    }
}

fn status(st: &Status, json: bool) -> ExitCode {
    if json {
        if !print_json(st) {
            return ExitCode::from(NO_DAEMON);
        }
    } else {
        print!("{}", render::status(st));
    }
    let verdict = render::Verdict::of(st);
    if json {
        for p in &verdict.problems {
            eprintln!("vipctl: {p}");
        }
    }
    ExitCode::from(if verdict.ok() { OK } else { PROBLEM })
}

fn explain(st: &Status, name: &str, json: bool) -> ExitCode {
    let Some(i) = st.instances.iter().find(|i| i.router.name == name) else {
        let names: Vec<&str> = st.instances.iter().map(|i| i.router.name.as_str()).collect();
        eprintln!("vipctl: no instance {name:?} (running: {})", names.join(", "));
        return ExitCode::from(PROBLEM);
    };
    if json {
        return ExitCode::from(if print_json(i) { OK } else { NO_DAEMON });
    }
    print!("{}", render::explain(i, wall_ms()));
    ExitCode::from(OK)
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Follow the daemon's events until it stops (exit 0 after its `stopping`
/// line), the connection is lost (2), or stdout is closed.
fn watch(cli: &Cli, timeout: Duration, json: bool) -> ExitCode {
    use std::io::Write;
    let mut code = NO_DAEMON;
    let out = std::io::stdout();
    let r = control::watch::follow(&cli.socket, timeout, |rx| {
        let mut out = out.lock();
        match rx {
            Received::Line(l) => {
                let text = if json {
                    serde_json::to_string(&*l).unwrap_or_default()
                } else {
                    render::watch_line(&l)
                };
                let stopping = matches!(l.event, control::proto::WatchEvent::Stopping { .. });
                if stopping {
                    code = OK;
                }
                // A closed stdout (`vipctl watch | head`) ends the watch quietly.
                if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
                    code = OK;
                    return false;
                }
                !stopping
            }
            Received::Closed => {
                eprintln!("vipctl: connection to vipd lost (it did not announce a stop)");
                false
            }
        }
    });
    if let Err(e) = r {
        eprintln!("vipctl: {e}");
        return ExitCode::from(NO_DAEMON);
    }
    ExitCode::from(code)
}
