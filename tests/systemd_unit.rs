//! The shipped systemd unit passes `systemd-analyze verify` (with the binary
//! path pointed at the one cargo built) and keeps a good offline security score.
use std::process::Command;

#[test]
fn unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/vipd.service")).unwrap();
    assert!(unit.contains("Type=notify"));
    assert!(unit.contains("CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE"));
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        panic!("systemd-analyze not installed (scripts/deps installs systemd)");
    }
    let dir = std::env::temp_dir().join(format!("vipd-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vipd.service");
    // A refused config must fail `systemctl reload`: vipctl reports it, kill -HUP cannot.
    assert!(unit.contains("ExecReload=/usr/bin/vipctl --socket /run/vipd/vipd.sock reload"));
    // A crashed daemon hands its VIPs over (vipd --release; docs/handover.md).
    assert!(unit.contains("ExecStopPost=/usr/sbin/vipd --release -c /etc/vipd/vipd.toml"));
    let local = unit
        .replace("/usr/sbin/vipd", env!("CARGO_BIN_EXE_vipd"))
        .replace("/usr/bin/vipctl", env!("CARGO_BIN_EXE_vipctl"));
    std::fs::write(&path, local).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && !err.contains("vipd.service:"),
        "systemd-analyze verify: {err}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let score: f64 = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split("vipd.service:").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in: {text}"));
    assert!(score <= 3.0, "exposure {score} > 3.0:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
