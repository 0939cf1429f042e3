//! SHELL: the runners behind tracking (`vrrp_script`, `vrrp_track_file`,
//! `vrrp_track_process`) and the one way vipd runs a user's script (`spawn`).

pub mod spawn;
