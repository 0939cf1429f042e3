//! The metrics page of a real vipd (root, namespaces): the whole page passes a real parser
//! (`promtool check metrics`), a failover fills every phase of the failover histogram, `/health`
//! and `/ready` answer with the right codes, and the Grafana dashboard and the example alerts of
//! docs/metrics.md reference only metrics the page has (and the rules pass `promtool check rules`).

mod common;
use common::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const BACKEND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/backend.py");
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/grafana-vipd.json");
const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
const PINNED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/control/metrics.txt");
const VIP: &str = "192.0.2.100";
const METRICS: &str = "127.0.0.1:9650";

/// Fronts fe1..feN (priorities 150, 100) with a TCP virtual server, three HTTP-checked backends.
fn lab(tag: &str, fronts: usize) -> Lab {
    let mut lab = Lab::new(tag);
    for i in 1..=fronts {
        lab.add_host(
            &format!("fe{i}"),
            &[&format!("192.0.2.{i}/24"), &format!("198.51.100.{i}/24")],
        );
    }
    for i in 1..=3 {
        let ns = lab.add_host(&format!("be{i}"), &[&format!("198.51.100.1{i}/24")]);
        lab.spawn(
            &format!("be{i}"),
            &ns,
            &["python3", BACKEND, &format!("be{i}"), "6000", "8686"],
        );
    }
    for i in 1..=fronts {
        let prio = if i == 1 { 150 } else { 100 };
        let sock = lab.dir.join(format!("fe{i}.sock"));
        let cfg = format!(
            "[global]\ncontrol_socket = \"{}\"\nmetrics = \"{METRICS}\"\n\n\
             [vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {prio}\n\
             advert_int = 0.1\nvirtual_ipaddress = [\"{VIP}/24\"]\n\n\
             [virtual_server.ingest]\nlisten = \"{VIP}:6000\"\nvrrp_instance = \"VI_1\"\n\
             check = {{ type = \"http\", port = 8686, path = \"/health\", interval = \"300ms\", timeout = \"300ms\", rise = 1, fall = 2 }}\n\
             real_server = [\n  {{ address = \"198.51.100.11:6000\" }},\n  {{ address = \"198.51.100.12:6000\" }},\n  {{ address = \"198.51.100.13:6000\" }},\n]\n",
            sock.display()
        );
        let path = lab.dir.join(format!("fe{i}.toml"));
        std::fs::write(&path, cfg).unwrap();
        let ns = lab.ns(&format!("fe{i}"));
        lab.spawn(&format!("fe{i}"), &ns, &[VIPD, "-c", &path.display().to_string()]);
    }
    lab
}

/// GET `path` from the metrics listener inside `fe`'s namespace: (status code, body).
fn http(lab: &Lab, fe: &str, path: &str) -> Option<(u16, String)> {
    let script = format!(
        "import sys, urllib.request, urllib.error\n\
         try:\n    r = urllib.request.urlopen('http://{METRICS}{path}', timeout=5); c, b = r.status, r.read()\n\
         except urllib.error.HTTPError as e:\n    c, b = e.code, e.read()\n\
         sys.stdout.write(str(c) + '\\n' + b.decode())\n"
    );
    let out = run(&["ip", "netns", "exec", &lab.ns(fe), "python3", "-c", &script]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (code, body) = text.split_once('\n')?;
    Some((code.parse().ok()?, body.to_string()))
}

fn page(lab: &Lab, fe: &str) -> Option<String> {
    http(lab, fe, "/metrics").and_then(|(c, b)| (c == 200).then_some(b))
}

/// The value of the series written exactly as `series` (name and labels), if on the page.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `promtool check metrics` on `page`: (success, its output).
fn promtool_metrics(page: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/deps installs the Debian package prometheus)");
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Names a query may use: every family on the page, with `_bucket`, `_sum`, `_count` for histograms.
fn exported_names(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in page.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut w = rest.split_whitespace();
        let (Some(name), Some(kind)) = (w.next(), w.next()) else {
            continue;
        };
        names.insert(name.to_string());
        if kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{s}"));
            }
        }
    }
    names
}

/// Every `vipd_*` identifier in a PromQL expression.
fn referenced(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("vipd_") {
        let start = i + at;
        let boundary = start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.insert(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Every `expr` string anywhere in the dashboard.
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(DASHBOARD).expect("config/grafana-vipd.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let mut out = Vec::new();
    walk(&json, &mut out);
    out
}

/// The example alerting rules: the first ```yaml block of docs/metrics.md.
fn doc_rules() -> String {
    let doc = std::fs::read_to_string(DOC).expect("docs/metrics.md");
    let start = doc
        .find("```yaml\n")
        .expect("a ```yaml block of rules in docs/metrics.md")
        + 8;
    let len = doc[start..].find("```").expect("the rules block ends");
    doc[start..start + len].to_string()
}

/// Names used by `exprs` that `page` does not export.
fn missing(exprs: &[String], page: &str) -> Vec<String> {
    let have = exported_names(page);
    exprs
        .iter()
        .flat_map(|e| referenced(e))
        .filter(|n| !have.contains(n))
        .collect()
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let pinned = std::fs::read_to_string(PINNED).unwrap();
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10, "the dashboard has queries: {exprs:?}");
    assert_eq!(missing(&exprs, &pinned), Vec::<String>::new(), "dashboard vs {PINNED}");
    let rules = doc_rules();
    let exprs: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:").map(|e| e.trim().to_string()))
        .collect();
    assert!(exprs.len() >= 4, "{rules}");
    assert_eq!(missing(&exprs, &pinned), Vec::<String>::new(), "alerts vs {PINNED}");
    assert_eq!(
        referenced("rate(vipd_a_total[1m]) / xvipd_b + vipd_c"),
        ["vipd_a_total", "vipd_c"].map(String::from).into()
    );
}

#[test]
fn alert_rules_pass_promtool() {
    let (ok, text) = promtool_rules(&doc_rules());
    assert!(ok, "{text}");
}

/// `promtool check rules` on a rules file: (success, its output).
fn promtool_rules(rules: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("vipd-rules-{}-{}", std::process::id(), rules.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.yml");
    std::fs::write(&path, rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("promtool (scripts/deps installs the Debian package prometheus)");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every panel query of the dashboard is valid PromQL (Grafana's variables
/// replaced by values), checked as recording rules by promtool.
#[test]
fn dashboard_queries_are_valid_promql() {
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for e in dashboard_exprs() {
        if e.starts_with("label_values(") || !e.contains("vipd_") {
            continue;
        }
        let e = e
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$job", ".*")
            .replace("$vrrp_instance", ".*")
            .replace("$virtual_server", ".*");
        assert!(!e.contains('$'), "an unknown variable in {e}");
        n += 1;
        rules.push_str(&format!(
            "      - record: vipd:dashboard:{n}\n        expr: '{}'\n",
            e.replace('\'', "''")
        ));
    }
    assert!(n >= 10);
    let (ok, text) = promtool_rules(&rules);
    assert!(ok, "{text}\n{rules}");
}

#[test]
fn pinned_page_passes_promtool() {
    let (ok, text) = promtool_metrics(&std::fs::read_to_string(PINNED).unwrap());
    assert!(ok && text.trim().is_empty(), "{text}");
}

#[test]
fn scraped_page_passes_promtool_and_covers_instances_and_backends() {
    let _g = netns_lock();
    let lab = lab("mpt", 1);
    // Ready only once start-up is complete: the start-up log line is written by then.
    let ((), _) = poll_until(
        "/ready is 200",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || http(&lab, "fe1", "/ready").and_then(|(c, _)| (c == 200).then_some(())),
    );
    assert!(lab.log("fe1").contains("vipd started"), "{}", lab.log("fe1"));
    assert_eq!(http(&lab, "fe1", "/health").map(|r| r.0), Some(200));
    assert_eq!(http(&lab, "fe1", "/nope").map(|r| r.0), Some(404));
    let up = |p: &str, b: &str| {
        value(
            p,
            &format!("vipd_backend_up{{virtual_server=\"ingest\",backend=\"{b}\"}}"),
        )
    };
    let (page, _) = poll_until(
        "master, every backend up and checked",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || {
            let p = page(&lab, "fe1")?;
            let master = value(&p, "vipd_vrrp_state{vrrp_instance=\"VI_1\",state=\"master\"}") == Some(1.0);
            let all_up = ["198.51.100.11:6000", "198.51.100.12:6000", "198.51.100.13:6000"]
                .iter()
                .all(|b| up(&p, b) == Some(1.0));
            (master && all_up).then_some(p)
        },
    );
    let (ok, text) = promtool_metrics(&page);
    assert!(ok && text.trim().is_empty(), "promtool: {text}\n{page}");
    assert!(!page.contains("=\"\""), "an empty label value:\n{page}");
    for series in [
        "vipd_vrrp_base_priority{vrrp_instance=\"VI_1\"} 150",
        "vipd_vrrp_priority{vrrp_instance=\"VI_1\"} 150",
        "vipd_vrrp_transitions_total{vrrp_instance=\"VI_1\",from=\"init\",to=\"backup\",reason=\"startup\"} 1",
        "vipd_vrrp_transitions_total{vrrp_instance=\"VI_1\",from=\"backup\",to=\"master\",reason=\"master_down_timer\"} 1",
        "vipd_vrrp_failover_seconds_count{vrrp_instance=\"VI_1\",phase=\"total\"} 1",
        "vipd_vrrp_discards_total{vrrp_instance=\"VI_1\",reason=\"bad_ttl\"} 0",
    ] {
        assert!(page.contains(&format!("\n{series}\n")), "{series} missing:\n{page}");
    }
    let checks = "vipd_backend_check_duration_seconds_count{virtual_server=\"ingest\",backend=\"198.51.100.11:6000\",result=\"ok\"}";
    assert!(value(&page, checks).is_some_and(|n| n >= 1.0), "{page}");
    // Startup: backup, no master heard for Master_Down_Interval (~0.34 s), then master.
    let nm = value(&page, "vipd_vrrp_no_master_seconds_total{vrrp_instance=\"VI_1\"}").unwrap();
    assert!((0.2..5.0).contains(&nm), "no master for {nm} s");
    // Every name the dashboard and the alerts use is on this live page too
    // (udp families are typed even without a UDP virtual server).
    let exprs = dashboard_exprs();
    assert_eq!(missing(&exprs, &page), Vec::<String>::new());
}

#[test]
fn a_real_failover_fills_every_phase_of_the_histogram() {
    let _g = netns_lock();
    let mut lab = lab("mfo", 2);
    let phase = |p: &str, ph: &str, what: &str| {
        value(
            p,
            &format!("vipd_vrrp_failover_seconds_{what}{{vrrp_instance=\"VI_1\",phase=\"{ph}\"}}"),
        )
    };
    poll_until(
        "fe1 master, fe2 backup",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || {
            let p1 = page(&lab, "fe1")?;
            let p2 = page(&lab, "fe2")?;
            let m = value(&p1, "vipd_vrrp_state{vrrp_instance=\"VI_1\",state=\"master\"}") == Some(1.0);
            let b = value(&p2, "vipd_vrrp_state{vrrp_instance=\"VI_1\",state=\"backup\"}") == Some(1.0);
            (m && b && lab.has_addr(&lab.ns("fe1"), VIP)).then_some(())
        },
    );
    // fe2 may have been master for a moment at start-up (it can start
    // before fe1 and its timer fire first on loaded cores): count from here.
    let before = page(&lab, "fe2").unwrap();
    let n0 = |ph: &str, what: &str| phase(&before, ph, what).unwrap_or(0.0);
    let t = "vipd_vrrp_transitions_total{vrrp_instance=\"VI_1\",from=\"backup\",to=\"master\",reason=\"master_down_timer\"}";
    let t0 = value(&before, t).unwrap_or(0.0);
    // The master dies without a word: fe2's master-down timer fires.
    lab.signal("fe1", libc::SIGKILL, Duration::from_secs(5))
        .expect("fe1 exits");
    let (after, took) = poll_until(
        "fe2 measured a failover",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let p = page(&lab, "fe2")?;
            (phase(&p, "total", "count") == Some(n0("total", "count") + 1.0)).then_some(p)
        },
    );
    for ph in ["vip_install", "announce", "total"] {
        assert_eq!(
            phase(&after, ph, "count"),
            Some(n0(ph, "count") + 1.0),
            "{ph}:\n{after}"
        );
    }
    let (vip, ann, total) = (
        phase(&after, "vip_install", "sum").unwrap() - n0("vip_install", "sum"),
        phase(&after, "announce", "sum").unwrap() - n0("announce", "sum"),
        phase(&after, "total", "sum").unwrap() - n0("total", "sum"),
    );
    eprintln!("failover phases: vip_install {vip:.6} s, announce {ann:.6} s, total {total:.6} s (seen after {took:?})");
    assert!(vip > 0.0 && ann >= 0.0 && total < 2.0, "{after}");
    assert!(
        (total - (vip + ann)).abs() < 1e-5,
        "total = vip_install + announce: {after}"
    );
    assert!(lab.has_addr(&lab.ns("fe2"), VIP));
    assert_eq!(value(&after, t), Some(t0 + 1.0), "{after}");
    let (ok, text) = promtool_metrics(&after);
    assert!(ok && text.trim().is_empty(), "promtool: {text}");
}

/// GET `path` from an in-process metrics listener: (status code, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    (code, body)
}

/// `/ready` follows the daemon's stage (503 until start-up completes, 503 again
/// while stopping) and `/health` needs an event loop that answers.
#[tokio::test]
async fn ready_and_health_follow_the_daemon() {
    use vipd::control::observe::{Observer, Stage};
    use vipd::control::{metrics, Envelope, Request, Response, Status};
    let obs = Observer::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Envelope>(8);
    let server = metrics::MetricsServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .with_observer(obs.clone());
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run(tx));
    // Starting: the loop is busy starting instances and answers nothing yet.
    let (code, body) = get(addr, "/ready").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("starting"), "{body}");
    let t0 = std::time::Instant::now();
    let (code, body) = get(addr, "/health").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("did not answer"), "{body}");
    assert!(t0.elapsed() >= metrics::HEALTH_TIMEOUT - Duration::from_millis(100));
    // Start-up done, the loop answers.
    tokio::spawn(async move {
        while let Some((req, answer)) = rx.recv().await {
            assert_eq!(req, Request::Status {});
            let _ = answer.send(Response::status(Status::default()));
        }
    });
    obs.set_stage(Stage::Ready);
    assert_eq!(get(addr, "/ready").await, (200, "ready\n".into()));
    assert_eq!(get(addr, "/health").await, (200, "ok\n".into()));
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("\nvipd_up 1\n"), "{body}");
    // Leaving.
    obs.set_stage(Stage::Stopping);
    let (code, body) = get(addr, "/ready").await;
    assert_eq!((code, body.starts_with("stopping")), (503, true), "{body}");
    assert_eq!(get(addr, "/health").await.0, 503);
}

/// Every transition reason the page can carry is listed in docs/metrics.md.
#[test]
fn every_transition_reason_is_documented() {
    use vipd::control::observe::reason_label;
    use vipd::vrrp::Reason;
    let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let doc = std::fs::read_to_string(DOC).unwrap();
    let all = [
        Reason::Startup,
        Reason::AddressOwner,
        Reason::MasterDownTimer,
        Reason::PreemptHigherPriority { priority: 1 },
        Reason::HigherPriority { priority: 1, from: ip },
        Reason::EqualPriorityHigherAddress { priority: 1, from: ip },
        Reason::Shutdown,
        Reason::LinkDown,
        Reason::LinkUp,
        Reason::NoSourceAddress,
        Reason::SourceAddressRestored,
        Reason::TrackFault { what: "x".into() },
        Reason::TrackRecovered,
        Reason::ConfigChange,
        Reason::PriorityChange,
        Reason::SyncGroup { why: "x".into() },
    ];
    for r in all {
        let l = reason_label(&r);
        assert!(doc.contains(&format!("`{l}`")), "reason {l} is not in docs/metrics.md");
    }
}
