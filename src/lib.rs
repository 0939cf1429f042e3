//! vipd: VRRP virtual-IP failover and a health-checked L4 balancer.
//!
//! Pure cores (`vrrp`, `balance`, `time`) take `now` and return actions; the
//! shell (`net`, `proxy`, `check`, `control`, `daemon`) does the I/O.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod assets;
pub mod balance;
pub mod check;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod keepalived;
pub mod net;
pub mod proxy;
pub mod time;
pub mod track;
pub mod vrrp;
