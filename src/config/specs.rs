//! From the validated configuration to the pure cores' specs: a
//! `virtual_server` block becomes the forwarding table's [`TableSpec`] and
//! its passive ejection policy.
//! (An instance's `vrrp::RouterConfig` and a check's `check::CheckSpec` are
//! built during validation: they are the config's own types.)

use super::VirtualServer;
use crate::balance::{BackendSpec, PassivePolicy, TableSpec};

/// The pure table's view of a `virtual_server` block.
pub fn table_spec(vs: &VirtualServer) -> TableSpec {
    TableSpec {
        name: vs.name.clone(),
        algo: vs.lb_algo,
        health: vs.check.as_ref().map(|c| c.policy()),
        backends: vs
            .real_servers
            .iter()
            .map(|r| BackendSpec {
                address: r.address,
                weight: r.weight,
                backup: r.backup,
                priority: r.priority,
                admin: r.admin,
            })
            .collect(),
    }
}

/// The table's passive ejection policy from `passive = { ... }`.
pub fn passive_policy(vs: &VirtualServer) -> PassivePolicy {
    let d = PassivePolicy::default();
    PassivePolicy {
        error_limit: vs.limits.passive_error_limit,
        window: vs.limits.passive_window.unwrap_or(d.window),
        max_ejection_percent: vs.limits.max_ejection_percent.unwrap_or(d.max_ejection_percent),
    }
}
