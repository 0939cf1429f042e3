//! One vipd per control socket: a second `control::bind` on a live socket is
//! refused with an error naming it, a stale socket file is replaced, and a
//! vipd holding `<socket>.lock` (flock) wins over one started at the same instant. No root needed: everything lives in a temp directory.

#[path = "control/support.rs"]
mod support;

use std::io::ErrorKind;
use std::time::Duration;

use support::{fake_daemon, TempDir};
use vipd::control::{self, Request, Status};

/// `control::call` from a blocking thread (it is the synchronous vipctl client).
async fn status_over(sock: &std::path::Path) -> Result<Status, String> {
    let sock = sock.to_path_buf();
    tokio::task::spawn_blocking(move || control::call(&sock, &Request::Status {}, Duration::from_secs(10)))
        .await
        .unwrap()
        .map(|r| r.status.expect("a status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_bind_on_a_live_socket_is_refused_and_the_first_keeps_serving() {
    let dir = TempDir::new("ctl-bind");
    let sock = dir.path().join("vipd.sock");
    let first = control::bind(&sock).unwrap();
    let server = tokio::spawn(control::serve(
        first,
        fake_daemon(Status::default()),
        Default::default(),
    ));

    let err = control::bind(&sock).err().expect("second bind must fail");
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    let msg = err.to_string();
    assert!(msg.contains("another vipd is running"), "{msg}");
    assert!(
        msg.contains(&sock.display().to_string()),
        "the error names the socket: {msg}"
    );
    // The refused bind did not take the socket away from the first.
    assert_eq!(status_over(&sock).await.unwrap().version, env!("CARGO_PKG_VERSION"));
    server.abort();
}

#[tokio::test]
async fn live_socket_of_a_vipd_without_the_lock_is_refused() {
    // A vipd from before the lock file: it owns the socket but no lock.
    let dir = TempDir::new("ctl-bind");
    let sock = dir.path().join("vipd.sock");
    let old = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let err = control::bind(&sock)
        .err()
        .expect("bind must fail while the socket answers");
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    let msg = err.to_string();
    assert!(
        msg.contains("answers") && msg.contains(&sock.display().to_string()),
        "{msg}"
    );
    assert!(sock.exists(), "the live socket was removed");
    drop(old);
    // Now it is stale (the file stays, nobody listens) and the lock is free.
    assert!(control::bind(&sock).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_is_replaced() {
    let dir = TempDir::new("ctl-bind");
    let sock = dir.path().join("vipd.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists(), "a closed listener leaves its file behind");
    let l = control::bind(&sock).expect("a stale socket is replaced");
    let server = tokio::spawn(control::serve(l, fake_daemon(Status::default()), Default::default()));
    assert!(status_over(&sock).await.is_ok());
    server.abort();
}

#[tokio::test]
async fn lock_is_released_with_the_listener() {
    let dir = TempDir::new("ctl-bind");
    let sock = dir.path().join("vipd.sock");
    let first = control::bind(&sock).unwrap();
    assert!(control::lock_path(&sock).exists());
    drop(first);
    // Socket file left behind, lock released: as after a crash.
    let second = control::bind(&sock).expect("rebind after the first is gone");
    drop(second);
}

#[tokio::test]
async fn a_path_that_is_not_a_socket_is_left_alone() {
    let dir = TempDir::new("ctl-bind");
    let sock = dir.path().join("vipd.sock");
    std::fs::write(&sock, b"precious").unwrap();
    let err = control::bind(&sock).err().expect("refused");
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&sock).unwrap(), b"precious");
}

#[tokio::test]
async fn a_vipd_between_lock_and_bind_wins_over_a_second_one() {
    // Two vipd started at once, both finding a stale socket: the first has taken
    // the lock and not yet bound. The probe alone would let the second replace the
    // file too; the lock must stop it.
    let dir = TempDir::new("ctl-race");
    let sock = dir.path().join("vipd.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let lock_file = std::fs::File::create(control::lock_path(&sock)).unwrap();
    let held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let err = control::bind(&sock).err().expect("the lock holder wins");
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    let msg = err.to_string();
    assert!(
        msg.contains("vipd.sock.lock") && msg.contains(&sock.display().to_string()),
        "{msg}"
    );
    drop(held);
    assert!(control::bind(&sock).is_ok(), "free once the holder is gone");
}
