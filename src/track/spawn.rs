//! SHELL: run a user's script the one way vipd runs scripts (track scripts,
//! notify scripts): argv without a shell, a clean environment, its own process
//! group, optionally as another user; a timeout kills the whole group.
//!
//! ```ignore
//! // `RunAs` is resolved at config load (unknown user = config error);
//! // `global.script_user` is the default, `None` = as vipd runs.
//! let who = Some(RunAs::lookup("nobody", None)?);
//! let mut script = Script::new(argv, Duration::from_secs(30)).run_as(who);
//! script.env.push(("VIPD_STATE".into(), "MASTER".into())); // optional extra environment
//! let outcome = script.run().await; // never panics
//! if !outcome.success() { warn!("notify: {outcome}") }
//! ```
//!
//! `split_command` turns a keepalived-style string into argv at config load;
//! `crate::config::script_security` is `enable_script_security`'s check.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Group, Pid, User};
use serde::{Deserialize, Serialize};

/// The only environment a script sees (plus what [`Script::env`] adds).
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Who a script runs as: resolved once (at config load), so an unknown user
/// is a configuration error and not a failure at every run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// Resolve `user` (and `group`, else the user's primary group) from the
    /// password and group databases.
    pub fn lookup(user: &str, group: Option<&str>) -> Result<RunAs, String> {
        let u = match User::from_name(user) {
            Ok(Some(u)) => u,
            Ok(None) => return Err(format!("unknown user {user:?}")),
            Err(e) => return Err(format!("looking up user {user:?}: {e}")),
        };
        let gid = match group {
            None => u.gid.as_raw(),
            Some(g) => match Group::from_name(g) {
                Ok(Some(g)) => g.gid.as_raw(),
                Ok(None) => return Err(format!("unknown group {g:?}")),
                Err(e) => return Err(format!("looking up group {g:?}: {e}")),
            },
        };
        Ok(RunAs {
            user: user.to_string(),
            uid: u.uid.as_raw(),
            gid,
        })
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// One script to run: what, as whom, for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// argv[0] is the program: an absolute path, or a name looked up in [`CLEAN_PATH`].
    pub argv: Vec<String>,
    /// `None` = as vipd itself runs.
    pub run_as: Option<RunAs>,
    pub timeout: Duration,
    /// Added to the clean environment (`PATH` only by default).
    pub env: Vec<(String, String)>,
}

/// How a run ended. Only `Exited(0)` is a success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// Killed by a signal we did not send.
    Signaled(i32),
    /// Still running at the timeout: its process group was killed (SIGKILL).
    TimedOut,
    /// Could not be started (not found, not executable, setuid refused, ...).
    SpawnFailed(String),
}

impl Outcome {
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Exited(c) => write!(f, "exit status {c}"),
            Outcome::Signaled(s) => write!(f, "killed by signal {s}"),
            Outcome::TimedOut => write!(f, "timed out (process group killed)"),
            Outcome::SpawnFailed(e) => write!(f, "cannot run: {e}"),
        }
    }
}

/// Kills the script's process group when dropped before the script was reaped
/// (a timeout, or the caller dropping the future: shutdown, reload).
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Script {
    pub fn new(argv: Vec<String>, timeout: Duration) -> Script {
        Script {
            argv,
            run_as: None,
            timeout,
            env: Vec::new(),
        }
    }

    pub fn run_as(mut self, who: Option<RunAs>) -> Script {
        self.run_as = who;
        self
    }

    /// Run to the end or the timeout. Never panics; stdin/stdout/stderr are
    /// /dev/null. With `run_as`, setgid/setuid happen in the child before exec
    /// (a failure there is `SpawnFailed`: the script never runs as root
    /// instead); supplementary groups are dropped.
    pub async fn run(&self) -> Outcome {
        let Some((prog, args)) = self.argv.split_first() else {
            return Outcome::SpawnFailed("empty command".into());
        };
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .env_clear()
            .env("PATH", CLEAN_PATH)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(who) = &self.run_as {
            // std drops the supplementary groups when it changes the uid.
            cmd.gid(who.gid).uid(who.uid);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Outcome::SpawnFailed(format!("{prog}: {e}")),
        };
        // The child leads its own group: its pid is the group id.
        let mut guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Err(_) => {
                guard.kill();
                let _ = child.start_kill();
                let _ = child.wait().await;
                Outcome::TimedOut
            }
            Ok(Err(e)) => Outcome::SpawnFailed(format!("waiting for {prog}: {e}")),
            Ok(Ok(status)) => {
                // Reaped: the group id may be reused; nothing of ours to kill.
                guard.0 = None;
                match (status.code(), status.signal()) {
                    (Some(c), _) => Outcome::Exited(c),
                    (None, Some(s)) => Outcome::Signaled(s),
                    (None, None) => Outcome::SpawnFailed(format!("{status}")),
                }
            }
        }
    }
}

/// Split a keepalived-style command string into argv: whitespace separates,
/// single or double quotes group (quotes removed), a backslash escapes the
/// next character. keepalived groups with single quotes inside its
/// double-quoted `script "..."`; vipd also takes double quotes.
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let mut argv = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let Some(n) = chars.next() else {
                    return Err(format!("{s:?} ends with a lone backslash"));
                };
                cur.push(n);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    argv.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("{s:?} has an unclosed {q}"));
    }
    if in_word {
        argv.push(cur);
    }
    if argv.is_empty() {
        return Err("empty command".into());
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands_split_like_keepalived() {
        assert_eq!(
            split_command("killall -0 haproxy").unwrap(),
            v(&["killall", "-0", "haproxy"])
        );
        assert_eq!(
            split_command("  /bin/chk  'a b'  c ").unwrap(),
            v(&["/bin/chk", "a b", "c"])
        );
        assert_eq!(
            split_command("/bin/chk \"a b\"c ''").unwrap(),
            v(&["/bin/chk", "a bc", ""])
        );
        assert_eq!(split_command(r"/bin/x a\ b").unwrap(), v(&["/bin/x", "a b"]));
        assert!(split_command("   ").is_err());
        assert!(split_command("/bin/x 'open").is_err());
        assert!(split_command("/bin/x \\").is_err());
    }

    #[test]
    fn unknown_user_is_an_error() {
        assert!(RunAs::lookup("no-such-user-vipd-test", None)
            .unwrap_err()
            .contains("unknown user"));
        assert!(RunAs::lookup("root", Some("no-such-group-vipd-test"))
            .unwrap_err()
            .contains("unknown group"));
        let root = RunAs::lookup("root", None).unwrap();
        assert!(root.is_root());
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn exit_status_and_clean_environment() {
        rt().block_on(async {
            let ok = Script::new(v(&["true"]), Duration::from_secs(5)).run().await;
            assert_eq!(ok, Outcome::Exited(0));
            assert!(ok.success());
            let st = Script::new(v(&["sh", "-c", "exit 3"]), Duration::from_secs(5)).run().await;
            assert_eq!(st, Outcome::Exited(3));
            // Only PATH (and what we add) is set.
            let mut s = Script::new(
                v(&["sh", "-c", "test \"$(env | grep -v '^PWD=\\|^SHLVL=\\|^_=' | sort | tr '\\n' ' ')\" = \"A=1 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \""]),
                Duration::from_secs(5),
            );
            s.env.push(("A".into(), "1".into()));
            assert_eq!(s.run().await, Outcome::Exited(0));
            let missing = Script::new(v(&["/nonexistent/vipd-test"]), Duration::from_secs(5)).run().await;
            assert!(matches!(missing, Outcome::SpawnFailed(_)), "{missing}");
        });
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        rt().block_on(async {
            let dir = std::env::temp_dir().join(format!("vipd-spawn-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let pidfile = dir.join("child.pid");
            // A background grandchild in the same group, then a long sleep.
            let cmd = format!("sleep 30 & echo $! > {}; sleep 30", pidfile.display());
            let t0 = std::time::Instant::now();
            let out = Script::new(v(&["sh", "-c", &cmd]), Duration::from_millis(300))
                .run()
                .await;
            assert_eq!(out, Outcome::TimedOut);
            assert!(t0.elapsed() < Duration::from_secs(10));
            let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
            // The grandchild got SIGKILL: gone (or a zombie until init reaps it).
            let mut gone = false;
            for _ in 0..100 {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if stat.is_empty() || stat.contains(") Z") {
                    gone = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(gone, "grandchild {pid} survived the timeout");
            let _ = std::fs::remove_dir_all(&dir);
        });
    }

    #[test]
    fn runs_as_the_user_never_root() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to change user");
            return;
        }
        rt().block_on(async {
            use std::os::unix::fs::PermissionsExt;
            let dir = std::env::temp_dir().join(format!("vipd-spawn-user-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            let out = dir.join("id");
            let who = RunAs::lookup("nobody", None).unwrap();
            let cmd = format!("echo $(id -u) $(id -G) > {}", out.display());
            let r = Script::new(v(&["sh", "-c", &cmd]), Duration::from_secs(5))
                .run_as(Some(who.clone()))
                .run()
                .await;
            assert_eq!(r, Outcome::Exited(0));
            let got = std::fs::read_to_string(&out).unwrap();
            // The uid and only the primary group: no supplementary group of root's.
            assert_eq!(got.trim(), format!("{} {}", who.uid, who.gid));
            let _ = std::fs::remove_dir_all(&dir);
        });
    }
}
