//! The shipped systemd unit passes `systemd-analyze verify` (with the binary
//! paths pointed at the ones cargo built, and its man pages found) and keeps an
//! offline security exposure of at most 2.0 (keepalived's Debian unit: 9.6).
use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../systemd/vipd.service");

/// `systemd-analyze security --offline=true UNIT`: the overall exposure.
fn exposure(unit: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(unit)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(".service:").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in: {text}"))
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vipd-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn unit_verifies_and_is_hardened() {
    let unit = UNIT;
    assert!(unit.contains("Type=notify"));
    assert!(unit.contains("CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE"));
    // Not root: the vipd user, only three ambient capabilities, EPERM not SIGSYS.
    assert!(unit.contains("\nUser=vipd\n") && unit.contains("\nGroup=vipd\n"));
    assert!(unit.contains("AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE\n"));
    assert!(unit.contains("SystemCallErrorNumber=EPERM"));
    assert!(unit.contains("WatchdogSec="));
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        panic!("systemd-analyze not installed (scripts/deps installs systemd)");
    }
    let dir = scratch("verify");
    let path = dir.join("vipd.service");
    // A refused config must fail `systemctl reload`: vipctl reports it, kill -HUP cannot.
    assert!(unit.contains("ExecReload=/usr/bin/vipctl --socket /run/vipd/vipd.sock reload"));
    // A crashed daemon hands its VIPs over (vipd --release; docs/handover.md).
    assert!(unit.contains("ExecStopPost=/usr/sbin/vipd --release -c /etc/vipd/vipd.toml"));
    let local = unit
        .replace("/usr/sbin/vipd", env!("CARGO_BIN_EXE_vipd"))
        .replace("/usr/bin/vipctl", env!("CARGO_BIN_EXE_vipctl"));
    std::fs::write(&path, local).unwrap();
    // Documentation=man:... is checked by running man: give it the pages.
    let man = dir.join("man");
    for (bin, page) in [
        (env!("CARGO_BIN_EXE_vipd"), "vipd.8"),
        (env!("CARGO_BIN_EXE_vipctl"), "vipctl.8"),
    ] {
        let st = Command::new(bin).arg("--generate-assets").arg(&dir).output().unwrap();
        assert!(st.status.success(), "{bin} --generate-assets");
        std::fs::create_dir_all(man.join("man8")).unwrap();
        std::fs::rename(man.join(page), man.join("man8").join(page)).unwrap();
    }
    std::fs::create_dir_all(man.join("man5")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/man/vipd.toml.5"),
        man.join("man5/vipd.toml.5"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", &man)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && !err.contains("vipd.service:"),
        "systemd-analyze verify: {err}"
    );
    let score = exposure(&path);
    assert!(score <= 2.0, "exposure {score} > 2.0");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The comparison docs/operations.md quotes: keepalived's Debian unit, scored
/// the same way, when keepalived is installed (scripts/deps installs it).
#[test]
fn exposure_against_keepalived_unit() {
    let ka = [
        "/lib/systemd/system/keepalived.service",
        "/usr/lib/systemd/system/keepalived.service",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists());
    let Some(ka) = ka else {
        panic!("keepalived's unit not found (scripts/deps installs keepalived)");
    };
    let dir = scratch("ka");
    let ours = dir.join("vipd.service");
    std::fs::write(&ours, UNIT).unwrap();
    let (v, k) = (exposure(&ours), exposure(ka));
    eprintln!("systemd-analyze security --offline=true: vipd.service {v}, keepalived.service {k}");
    assert!(v <= 2.0 && v < k, "vipd {v} vs keepalived {k}");
    let _ = std::fs::remove_dir_all(&dir);
}
