//! vipd: the daemon. `vipd -c FILE` runs in the foreground (systemd
//! Type=notify); `vipd --check -c FILE` validates a config offline.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "vipd",
    version,
    about = "VRRP virtual-IP failover and health-checked L4 balancer"
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(short = 'c', long = "config", default_value = "/etc/vipd/vipd.toml")]
    config: PathBuf,
    /// Validate the configuration without touching the network, then exit.
    #[arg(long)]
    check: bool,
    /// After a crash (systemd ExecStopPost=; nothing when $SERVICE_RESULT is
    /// `success`): priority 0 for the VIPs a dead vipd left on this host, and
    /// remove them once a backup advertises as master (docs/handover.md).
    #[arg(long, conflicts_with = "check")]
    release: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. info, debug, vipd=debug.
    #[arg(long, default_value = "info", env = "VIPD_LOG")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vipd: bad --log filter {:?}: {e}", cli.log);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    if cli.check {
        // Every error in the file, each with its line and a caret.
        return match vipd::config::check_file(&cli.config) {
            Ok(cfg) => {
                println!(
                    "{}: OK ({} vrrp instance(s), {} virtual server(s))",
                    cli.config.display(),
                    cfg.instances.len(),
                    cfg.servers.len()
                );
                ExitCode::SUCCESS
            }
            Err(report) => {
                eprint!("{report}");
                ExitCode::from(1)
            }
        };
    }
    let cfg = match vipd::config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vipd: {e}");
            return ExitCode::from(1);
        }
    };
    if cli.release {
        return release(&cfg);
    }
    // First: the fd budget every cap is derived from (systemd's soft limit is 1024).
    match vipd::proxy::limits::raise_nofile_limit() {
        Ok((soft, hard)) => tracing::info!("fd limit: soft {soft}, hard {hard}"),
        Err(e) => tracing::warn!("cannot raise the fd limit: {e}"),
    }
    // The VRRP event loop, health checks and the control socket share one
    // thread; the balancer's data plane runs on its own per-core threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vipd: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(vipd::daemon::Daemon::run(cli.config.clone(), cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vipd: {e}");
            ExitCode::from(1)
        }
    }
}

/// `vipd --release`: hand over what a crashed vipd left (handover.rs).
fn release(cfg: &vipd::config::Config) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vipd: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(vipd::daemon::release_after_crash(cfg)) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vipd --release: {e}");
            ExitCode::from(1)
        }
    }
}
