//! SHELL: talking to the service manager (sd_notify) and running the user's
//! notify scripts (keepalived argument order).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

/// Tell systemd (Type=notify) something, if we run under it.
pub fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let res = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name).and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), Path::new(&path))
    };
    if let Err(e) = res {
        warn!("sd_notify {msg}: {e}");
    }
}

/// Run `script INSTANCE NAME STATE PRIORITY` with a 30 s bound (killed after).
pub async fn run_notify(script: PathBuf, args: [String; 4]) {
    let child = tokio::process::Command::new(&script)
        .args(&args)
        .kill_on_drop(true)
        .spawn();
    match child {
        Ok(mut c) => match tokio::time::timeout(Duration::from_secs(30), c.wait()).await {
            Ok(Ok(st)) if !st.success() => warn!("notify {} exited with {st}", script.display()),
            Ok(Err(e)) => warn!("notify {}: {e}", script.display()),
            Err(_) => warn!("notify {} took more than 30 s; killed", script.display()),
            _ => {}
        },
        Err(e) => warn!("notify {}: {e}", script.display()),
    }
}
