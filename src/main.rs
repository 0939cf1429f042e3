//! vipd: the daemon. `vipd -c FILE` runs in the foreground (systemd
//! Type=notify); `vipd --check -c FILE` validates a config offline.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, ValueEnum};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[derive(Parser, Debug)]
#[command(
    name = "vipd",
    version,
    about = "VRRP virtual-IP failover and health-checked L4 balancer",
    long_about = "vipd runs VRRP (RFC 9568 v3, RFC 3768 v2) virtual-IP failover and a health-checked \
TCP/UDP balancer on the virtual IPs, in the foreground (systemd Type=notify). SIGHUP reloads the \
configuration, SIGTERM leaves with priority 0 and releases the VIPs.",
    after_long_help = "Files: /etc/vipd/vipd.toml (see vipd.toml(5)), /run/vipd/vipd.sock (the control \
socket, see vipctl(8)). The packaged unit is vipd.service."
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
    /// Log format: text on stderr, json (one object per line on stderr), journald
    /// (native journal fields INSTANCE, VRID, STATE...), or auto (journald when
    /// stderr is the journal, text otherwise).
    #[arg(long, value_enum, default_value_t = LogFormat::Auto, env = "VIPD_LOG_FORMAT")]
    log_format: LogFormat,
    /// Write the man page and shell completions into DIR, then exit (packaging).
    #[arg(long, value_name = "DIR", hide = true)]
    generate_assets: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
    Journald,
}

/// Is stderr the journal? systemd sets JOURNAL_STREAM=DEV:INODE of the stream
/// it connected to stderr; a child that redirected stderr must not believe it.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()),
        Err(_) => false,
    }
}

fn init_logging(filter: tracing_subscriber::EnvFilter, format: LogFormat) {
    let format = match format {
        LogFormat::Auto if stderr_is_journal() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        f => f,
    };
    let mut fallback = None;
    let layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed(),
        LogFormat::Journald => match tracing_journald::layer() {
            // Fields keep their names (INSTANCE, VRID, STATE), no F prefix;
            // levels map to syslog's (info = 6), as `journalctl -p` expects.
            Ok(l) => l
                .with_field_prefix(None)
                .with_priority_mappings(tracing_journald::PriorityMappings {
                    info: tracing_journald::Priority::Informational,
                    debug: tracing_journald::Priority::Debug,
                    ..tracing_journald::PriorityMappings::new()
                })
                .with_syslog_identifier("vipd".to_string())
                .boxed(),
            Err(e) => {
                fallback = Some(e);
                text_layer()
            }
        },
        LogFormat::Auto | LogFormat::Text => text_layer(),
    };
    tracing_subscriber::registry().with(layer.with_filter(filter)).init();
    if let Some(e) = fallback {
        tracing::warn!("cannot log to the journal ({e}); logging text to stderr");
    }
}

fn text_layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .boxed()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = &cli.generate_assets {
        return vipd::assets::generate_and_report(Cli::command(), "8", dir);
    }
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vipd: bad --log filter {:?}: {e}", cli.log);
            return ExitCode::from(2);
        }
    };
    init_logging(filter, cli.log_format);
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
