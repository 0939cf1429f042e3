//! The RFC 9568 §6 state machine for one virtual router. STUB: signatures only.
#![allow(unused_variables, dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Action, Input, RouterConfig, State};
use crate::time::Instant;

/// Counters of one router, shown by `vipctl status --json` (EX5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub transitions: u64,
    pub became_master: u64,
    /// Per `RxError::name()`; every reason present (0 if never seen).
    pub discards: BTreeMap<String, u64>,
}

/// Snapshot for vipctl.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterStatus {
    pub name: String,
    pub vrid: u8,
    pub state: State,
    pub base_priority: u8,
    pub effective_priority: u8,
    pub master_addr: Option<IpAddr>,
    pub master_priority: Option<u8>,
    /// Configured interval, microseconds.
    pub advert_interval_us: u64,
    /// Interval in use (a v3 backup adopts the master's), microseconds.
    pub master_adver_interval_us: u64,
    pub vips: Vec<IpAddr>,
    pub counters: Counters,
}

pub struct Router {
    cfg: RouterConfig,
}

impl Router {
    /// A router in Initialize; `local_addr` is our source / tie-break address.
    pub fn new(cfg: RouterConfig, local_addr: Option<IpAddr>) -> Self {
        unimplemented!()
    }
    /// The only entry point: feed one input at `now`, get the actions in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        unimplemented!()
    }
    /// Earliest deadline at which `handle(now, Input::Tick)` must be called.
    pub fn poll_at(&self) -> Option<Instant> {
        unimplemented!()
    }
    pub fn state(&self) -> State {
        unimplemented!()
    }
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }
    pub fn status(&self) -> RouterStatus {
        unimplemented!()
    }
}
