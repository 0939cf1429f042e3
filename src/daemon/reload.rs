//! SHELL: configuration reload (SIGHUP / `vipctl reload`), control requests
//! and the status snapshot that `vipctl` and the metrics read.

use std::sync::atomic::Ordering;

use tracing::{error, info, warn};

use super::facts::family_of;
use super::systemd::sd_notify;
use super::Daemon;
use crate::config;
use crate::control::{InstanceStatus, Request, Response, Status};
use crate::vrrp::Input;

impl Daemon {
    /// A config that fails validation is refused and the old one keeps
    /// running; unchanged instances are not touched (EX4). VIPs follow the new
    /// configuration: dropped ones leave, a prefix change re-adds.
    pub(super) async fn reload(&mut self) -> Result<String, String> {
        let new = match config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                self.stats.reload_failures += 1;
                let msg = format!("reload refused, keeping the running config: {e}");
                error!("{msg}");
                return Err(msg);
            }
        };
        sd_notify("RELOADING=1");
        self.stats.reloads += 1;
        if new.global.control_socket != self.cfg.global.control_socket {
            warn!(
                "control_socket change needs a restart; keeping {}",
                self.cfg.global.control_socket.display()
            );
        }
        let removed = self.remove_incompatible(&new).await;
        self.cfg = new.clone();
        self.refresh_now().await;
        self.sync_vmacs(false).await;
        let (mut kept, mut changed, mut added) = (0, 0, 0);
        for n in &new.instances {
            let Some(i) = self.insts.position(&n.name) else {
                added += 1;
                self.add_instance(n.clone(), true).await;
                continue;
            };
            if self.insts.list[i].cfg == *n {
                kept += 1;
                continue;
            }
            changed += 1;
            self.insts.list[i].cfg = n.clone();
            self.input(i, Input::Config(n.router.clone())).await;
            // A new base priority resets the router's; tracking is applied
            // again below from what the router now has.
            let x = &mut self.insts.list[i];
            x.effective_priority = x.router.status().effective_priority;
        }
        // New facts (a VIP set, source or tracking may have changed): re-derive
        // source, tracked priority and tracker faults of every instance.
        self.on_facts_changed().await;
        self.sync_configure().await;
        let mut msg =
            format!("reloaded: {kept} instance(s) unchanged, {changed} changed, {added} added, {removed} removed");
        if let Some(b) = self.balancer.as_mut() {
            if let Err(e) = b.reload(&new.servers, &self.mastership).await {
                msg.push_str(&format!("; balancer reload failed: {e}"));
            }
        } else if let Err(e) = self.start_balancer().await {
            msg.push_str(&format!("; {e}"));
        }
        self.start_trackers();
        self.retrack_all("reload").await;
        info!("{msg}");
        sd_notify("READY=1");
        self.notify_status();
        Ok(msg)
    }

    /// Removed or incompatibly changed instances leave first (priority 0,
    /// VIPs released and awaited). Returns how many left.
    async fn remove_incompatible(&mut self, new: &config::Config) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while i < self.insts.list.len() {
            let old = &self.insts.list[i];
            let keep = new.instances.iter().any(|n| {
                n.name == old.cfg.name
                    && n.interface == old.cfg.interface
                    && n.router.vrid == old.cfg.router.vrid
                    && n.router.version == old.cfg.router.version
                    && family_of(n) == old.family
                    && n.unicast_src_ip == old.cfg.unicast_src_ip
                    && n.vmac == old.cfg.vmac
            });
            if keep {
                i += 1;
                continue;
            }
            self.input(i, Input::Shutdown).await;
            self.release_vips_of(i).await;
            let gone = self.insts.remove(i);
            self.mastership.remove(&gone.cfg.name);
            self.notify_removed(&gone.cfg, gone.effective_priority);
            removed += 1;
        }
        removed
    }

    /// Delete instance `i`'s VIPs now (awaited), with the kernel's prefix.
    async fn release_vips_of(&mut self, i: usize) {
        self.refresh_now().await;
        let x = &self.insts.list[i];
        let Some(f) = self.links.facts(x.cfg.vip_interface()).cloned() else {
            return;
        };
        for ip in x.vips.owned.keys() {
            if let Some(&p) = f.addrs.get(ip) {
                if let Err(e) = self.links.nl.del_address(f.index, *ip, p).await {
                    error!("{}: removing VIP {ip}/{p}: {e}", x.cfg.name);
                }
            }
        }
    }

    pub(super) async fn on_request(&mut self, req: Request) -> Response {
        match req {
            Request::Status {} => Response {
                ok: true,
                error: None,
                status: Some(self.status()),
                message: None,
            },
            Request::Reload {} => match self.reload().await {
                Ok(m) => Response::message(m),
                Err(e) => Response::error(e),
            },
            Request::Backend {
                virtual_server,
                address,
                state,
            } => self.on_backend_request(&virtual_server, &address, &state),
            Request::Demote {
                instance, timeout_ms, ..
            } => self.demote(&instance, timeout_ms).await,
            Request::Promote { instance } => self.promote(&instance).await,
            Request::Watch { marker } => self.on_watch(marker),
        }
    }

    fn on_backend_request(&mut self, virtual_server: &str, address: &str, state: &str) -> Response {
        let refuse = |d: &Daemon, msg: String| {
            d.stats.control_errors.fetch_add(1, Ordering::Relaxed);
            Response::error(msg)
        };
        let admin = match state {
            "ready" => config::Admin::Ready,
            "drain" => config::Admin::Drain,
            "maint" => config::Admin::Maint,
            other => {
                return refuse(
                    self,
                    format!("unknown backend state {other:?}: use ready, drain or maint"),
                )
            }
        };
        let Ok(addr) = address.parse::<std::net::SocketAddr>() else {
            return refuse(self, format!("{address:?} is not an address:port"));
        };
        let Some(b) = self.balancer.as_ref() else {
            return Response::error("no virtual servers configured");
        };
        match b.set_admin(virtual_server, addr, admin) {
            Ok(()) => Response::message(format!("{virtual_server} {addr}: {state}")),
            Err(e) => refuse(self, e.to_string()),
        }
    }

    pub(super) fn status(&self) -> Status {
        let now = self.clock.now();
        let mut st = Status {
            router_id: self.cfg.global.router_id.clone(),
            config_file: self.path.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            reloads: self.stats.reloads,
            reload_failures: self.stats.reload_failures,
            interface_discards: self.stats.interface_discards.clone(),
            control_errors: self.stats.control_errors.load(Ordering::Relaxed),
            instances: self
                .insts
                .list
                .iter()
                .map(|i| InstanceStatus {
                    interface: i.cfg.interface.clone(),
                    source: i.src,
                    link_up: i.link_up,
                    vips_readded: i.vips.readded,
                    vip_add_failures: i.vips.add_failures,
                    vip_remove_failures: i.vips.remove_failures,
                    vip_last_error: i.vips.last_error.clone(),
                    trackers: self.trackers_of(i),
                    sync_group: i.cfg.sync_group.clone(),
                    router: i.router.status(),
                    explain: super::events::explain(&i.router, now),
                })
                .collect(),
            virtual_servers: self.balancer.as_ref().map(|b| b.status()).unwrap_or_default(),
            ..Status::default()
        };
        st.set_control_clients(self.stats.clients.control.snapshot());
        st.control_requests_denied = self.stats.clients.control.denied.load(Ordering::Relaxed);
        if let Some(m) = &self.stats.clients.metrics {
            st.set_metrics_clients(m.snapshot());
        }
        st
    }
}
