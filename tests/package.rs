//! The Debian package (`scripts/package --dev`, cargo deb): its contents and
//! conffiles, lintian, man pages that render without warnings, completions that parse,
//! and a real `dpkg --root` install into a throw-away root (maintainer scripts
//! run chrootless with DPKG_ROOT): the vipd user and group, /run/vipd, the
//! conffile kept across a reinstall and removed on purge, this host untouched.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Build the .deb from the binaries this `cargo test` built; `None` (skip)
/// only when cargo-deb is missing outside CI.
fn build_deb(out: &Path) -> Option<PathBuf> {
    if !have("cargo-deb") {
        assert!(
            std::env::var_os("CI").is_none(),
            "cargo-deb missing in CI (.ci/run installs it)"
        );
        eprintln!("SKIP: cargo-deb is not installed (cargo install cargo-deb --locked)");
        return None;
    }
    // The binaries cargo test just built are the ones packaged (debug, or
    // release under `cargo test --release`).
    let bin = Path::new(env!("CARGO_BIN_EXE_vipd"));
    let mut cmd = Command::new(Path::new(ROOT).join("scripts/package"));
    if bin.starts_with(Path::new(ROOT).join("target/debug")) {
        cmd.arg("--dev");
    } else {
        assert!(
            bin.starts_with(Path::new(ROOT).join("target/release")),
            "{}",
            bin.display()
        );
    }
    run(cmd.arg("--output").arg(out).env("VIPD_PACKAGE_NO_BUILD", "1"));
    let deb = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb in the output directory");
    Some(deb)
}

fn md5(paths: &[&str]) -> String {
    text(&run(Command::new("md5sum").args(paths)))
}

#[test]
fn deb_contents_man_pages_and_throwaway_root_install() {
    let scratch = Scratch(std::env::temp_dir().join(format!("vipd-pkg-{}", std::process::id())));
    let dir = &scratch.0;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let Some(deb) = build_deb(dir) else { return };
    let name = deb.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with(&format!("vipd_{}-1_", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );

    // Contents.
    let list = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    for path in [
        "./usr/sbin/vipd",
        "./usr/bin/vipctl",
        "./usr/lib/systemd/system/vipd.service",
        "./etc/vipd/vipd.toml",
        "./usr/lib/sysusers.d/vipd.conf",
        "./usr/lib/tmpfiles.d/vipd.conf",
        "./usr/share/man/man8/vipd.8.gz",
        "./usr/share/man/man8/vipctl.8.gz",
        "./usr/share/man/man8/vipctl-status.8.gz",
        "./usr/share/man/man8/vipctl-reload.8.gz",
        "./usr/share/man/man5/vipd.toml.5.gz",
        "./usr/share/bash-completion/completions/vipd",
        "./usr/share/bash-completion/completions/vipctl",
        "./usr/share/zsh/vendor-completions/_vipctl",
        "./usr/share/fish/vendor_completions.d/vipctl.fish",
        "./usr/share/doc/vipd/examples/vipd.toml",
        "./usr/share/doc/vipd/copyright",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} missing from the package:\n{list}"
        );
    }
    assert!(list
        .lines()
        .any(|l| l.starts_with("-rwxr-xr-x 0/0") && l.ends_with(" ./usr/sbin/vipd")));
    // Control: conffiles, dependencies, maintainer scripts.
    let info = text(&run(Command::new("dpkg-deb").arg("-I").arg(&deb)));
    assert!(
        info.contains("Package: vipd") && info.contains("Depends: libc6"),
        "{info}"
    );
    let ctl = dir.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctl));
    assert_eq!(
        std::fs::read_to_string(ctl.join("conffiles")).unwrap(),
        "/etc/vipd/vipd.toml\n"
    );
    let postinst = std::fs::read_to_string(ctl.join("postinst")).unwrap();
    assert!(postinst.contains("systemd-sysusers") && postinst.contains("deb-systemd-helper enable vipd.service"));

    // The Debian changelog names this version (a new entry per release).
    let changelog = include_str!("../pkg/deb/changelog");
    assert!(
        changelog.starts_with(&format!("vipd ({}-1) ", env!("CARGO_PKG_VERSION"))),
        "pkg/deb/changelog needs an entry for {}",
        env!("CARGO_PKG_VERSION")
    );
    // lintian: no error and no warning but the one for packages not uploaded to Debian.
    if have("lintian") {
        let out = Command::new("lintian")
            .args([
                "--tag-display-limit",
                "0",
                "--suppress-tags",
                "initial-upload-closes-no-bugs",
            ])
            .arg(&deb)
            .output()
            .expect("lintian");
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        let tags: Vec<&str> = report
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
            .collect();
        assert!(tags.is_empty(), "lintian:\n{report}");
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "lintian missing in CI (scripts/deps installs it)"
        );
        eprintln!("SKIP lintian: not installed (apt-get install lintian)");
    }

    // Unpacked: the unit is the repository's, man pages render, completions parse.
    let x = dir.join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
    assert_eq!(
        std::fs::read_to_string(x.join("usr/lib/systemd/system/vipd.service")).unwrap(),
        include_str!("../systemd/vipd.service")
    );
    for page in [
        "man8/vipd.8.gz",
        "man8/vipctl.8.gz",
        "man8/vipctl-backend.8.gz",
        "man5/vipd.toml.5.gz",
    ] {
        let p = x.join("usr/share/man").join(page);
        let out = run(Command::new("sh")
            .arg("-c")
            .arg("zcat \"$1\" | groff -man -Tutf8 -ww -z")
            .arg("sh")
            .arg(&p)
            .env("LC_ALL", "C.UTF-8"));
        assert!(
            out.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = text(&run(Command::new("man").arg("-l").arg(&p).env("MANPAGER", "cat")));
        assert!(shown.contains("NAME") && shown.contains("vipd"), "{page}: {shown}");
    }
    let vipd_page = text(&run(Command::new("man")
        .arg("-l")
        .arg(x.join("usr/share/man/man8/vipd.8.gz"))
        .env("MANPAGER", "cat")));
    assert!(vipd_page.contains("--log-format") && !vipd_page.contains("generate-assets"));
    for f in ["vipd", "vipctl"] {
        run(Command::new("bash")
            .arg("-n")
            .arg(x.join("usr/share/bash-completion/completions").join(f)));
    }
    let bash = std::fs::read_to_string(x.join("usr/share/bash-completion/completions/vipctl")).unwrap();
    assert!(bash.contains("reload") && bash.contains("backend"));

    // A real install into a throw-away root. Root only (dpkg sets owners).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("SKIP: the dpkg --root install needs root");
        return;
    }
    let host_before = md5(&["/etc/passwd", "/etc/group"]);
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants/vipd.service");
    let wanted_before = wants.exists();
    let root = dir.join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(f), "").unwrap();
    }
    let dpkg = |args: &[&str]| {
        run(Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-script-chrootless", "--force-depends", "--log=/dev/null"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    dpkg(&["-i", deb.to_str().unwrap()]);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("vipd:"))
        .unwrap_or_else(|| panic!("no vipd user in {passwd}"));
    let f: Vec<&str> = user.split(':').collect();
    let (uid, gid): (u32, u32) = (f[2].parse().unwrap(), f[3].parse().unwrap());
    assert!(uid > 0 && uid < 1000, "a system uid: {user}");
    assert!(f[6].ends_with("nologin"), "no login shell: {user}");
    assert!(
        group.lines().any(|l| l == format!("vipd:x:{gid}:")),
        "group vipd: {group}"
    );
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let run_dir = std::fs::metadata(root.join("run/vipd")).expect("tmpfiles made /run/vipd");
        assert_eq!(
            (run_dir.uid(), run_dir.gid(), run_dir.permissions().mode() & 0o7777),
            (uid, gid, 0o750)
        );
        let conf = std::fs::metadata(root.join("etc/vipd/vipd.toml")).unwrap();
        assert_eq!(
            (conf.uid(), conf.gid(), conf.permissions().mode() & 0o777),
            (0, gid, 0o640)
        );
    }
    // The installed binary accepts the installed example config.
    let check = run(Command::new(root.join("usr/sbin/vipd"))
        .args(["--check", "-c"])
        .arg(root.join("etc/vipd/vipd.toml")));
    assert!(text(&check).contains("OK (0 vrrp instance(s)"));
    // An upgrade (here: a reinstall) keeps the operator's edit of the conffile, and its mode.
    let conf = root.join("etc/vipd/vipd.toml");
    let edited = std::fs::read_to_string(&conf).unwrap() + "# edited by the operator\n";
    std::fs::write(&conf, &edited).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    dpkg(&["-i", deb.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the operator's mode is kept on upgrade");
    // Purge removes the conffile and the files; the system user stays (Debian policy).
    dpkg(&["--purge", "vipd"]);
    assert!(!conf.exists() && !root.join("usr/sbin/vipd").exists());
    assert!(std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .contains("vipd:"));
    assert_eq!(
        md5(&["/etc/passwd", "/etc/group"]),
        host_before,
        "the host's users changed"
    );
    assert_eq!(
        wants.exists(),
        wanted_before,
        "the host's vipd.service was enabled or disabled"
    );
}

/// vipd.toml(5) is written by hand: every key the parser accepts
/// (src/config/raw.rs) must be in it, so a new key cannot ship undocumented.
#[test]
fn man_page_names_every_config_key() {
    let raw = include_str!("../src/config/raw.rs");
    let page = include_str!("../man/vipd.toml.5");
    let mut missing = Vec::new();
    let mut rename: Option<String> = None;
    for line in raw.lines().map(str::trim) {
        if let Some(r) = line.strip_prefix("#[serde(rename = \"") {
            rename = r.split('"').next().map(String::from);
            continue;
        }
        let Some(field) = line
            .strip_prefix("pub ")
            .and_then(|l| l.split_once(':'))
            .map(|(f, _)| f)
        else {
            continue;
        };
        if field.contains(' ') || field.contains('(') {
            continue; // not a field
        }
        let key = rename.take().unwrap_or_else(|| field.to_string());
        // Shown in bold: a word of a `.B` / `.BR` line, or `\fBkey\fR`.
        let shown = page.contains(&format!("\\fB{key}\\fR"))
            || page.lines().filter(|l| l.starts_with(".B")).any(|l| {
                l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|w| w == key)
            });
        if !shown {
            missing.push(key);
        }
    }
    assert!(
        missing.is_empty(),
        "keys of src/config/raw.rs not in man/vipd.toml.5 (document them there): {missing:?}"
    );
}
