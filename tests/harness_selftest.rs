//! Self-test of the namespace harness: a two-host lab pings across the bridge
//! and leaves nothing behind.
mod common;
use common::*;
use std::time::Duration;

#[test]
fn lab_builds_pings_and_cleans_up() {
    let _g = netns_lock();
    let prefix;
    {
        let mut lab = Lab::new("hs");
        prefix = lab.prefix.clone();
        let a = lab.add_host("a", &["192.0.2.1/24"]);
        let _b = lab.add_host("b", &["192.0.2.2/24"]);
        poll_until("ping a->b", Duration::from_secs(10), Duration::from_millis(100), || {
            run(&["ip", "netns", "exec", &a, "ping", "-c1", "-W1", "192.0.2.2"])
                .status
                .success()
                .then_some(())
        });
        assert!(lab.has_addr(&a, "192.0.2.1"));
    }
    let list = sh(&["ip", "netns", "list"]);
    assert!(!list.contains(&prefix), "namespaces leaked: {list}");
}
