//! SHELL: `use_vmac` in the daemon: the macvlans of the instances exist while
//! they run (stale ones of an earlier run are replaced at start-up, unwanted
//! ones deleted on reload and exit, with the base's settings restored), and
//! the send-only sockets that make adverts leave from them.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{error, warn};

use super::Daemon;
use crate::config::Vmac;
use crate::net::vmac::{VmacSpec, VmacTable};
use crate::net::vrrp_socket::{Family, VrrpSocket};

/// What the daemon holds for `use_vmac`. (Adverts are received, and sent,
/// on the macvlan through the daemon's ordinary sockets; with
/// `vmac_xmit_base` they are sent from the base through a send-only socket.)
#[derive(Default)]
pub(super) struct Vmacs {
    table: VmacTable,
    /// macvlan name -> (base index, send-only socket on the base).
    tx: HashMap<String, (u32, Arc<VrrpSocket>)>,
}

impl Daemon {
    /// Make each `use_vmac` instance's macvlan exist on its base (when the base
    /// exists) and delete ours that no instance wants. `fresh` (start-up)
    /// replaces any existing one of that name. Awaits netlink only when
    /// something is missing.
    pub(super) async fn sync_vmacs(&mut self, fresh: bool) {
        let mut changed = false;
        let wanted: Vec<(String, Vmac, u8, Family)> = self
            .cfg
            .instances
            .iter()
            .filter_map(|i| {
                let fam = if i.vips[0].is_ipv4() { Family::V4 } else { Family::V6 };
                Some((i.interface.clone(), i.vmac.clone()?, i.router.vrid, fam))
            })
            .collect();
        for (base, vmac, vrid, fam) in &wanted {
            let Some(bf) = self.links.facts(base).cloned() else {
                continue;
            };
            let spec = VmacSpec {
                ifname: vmac.ifname.clone(),
                base: base.clone(),
                base_index: bf.index,
                mac: Vmac::mac(*vrid, *fam == Family::V4),
                ipv6: *fam == Family::V6,
                link_local: bf.link_local_v6.first().copied(),
            };
            let have = self.links.facts(&vmac.ifname).cloned();
            let ok = !fresh
                && self.links.vmacs.table.made.contains_key(&vmac.ifname)
                && have.as_ref().is_some_and(|f| f.mac == spec.mac);
            if !ok {
                match self.links.vmacs.table.ensure(&self.links.nl, &spec, fresh).await {
                    Ok(_) => changed = true,
                    Err(e) => {
                        // Without its macvlan the instance has no socket, hence no
                        // source: it stays in FAULT (never a master without VIPs).
                        if let Some(n) = self.limiter.allow(format!("{}/vmac", vmac.ifname)) {
                            error!(
                                "{}: cannot set up the macvlan on {base}: {e} (instance in FAULT) [{n} similar suppressed]",
                                vmac.ifname
                            );
                        }
                        continue;
                    }
                }
            } else if let (Some(ll), Some(f)) = (spec.link_local.filter(|_| spec.ipv6), &have) {
                // The base's link-local appeared after the macvlan: give it to it.
                if !f.link_local_v6.contains(&ll) {
                    if let Err(e) = self.links.nl.add_address(f.index, ll.into(), 64).await {
                        warn!("{}: adding link-local {ll}: {e}", vmac.ifname);
                    }
                    changed = true;
                }
            }
        }
        let unwanted: Vec<String> = self
            .links
            .vmacs
            .table
            .made
            .keys()
            .filter(|n| !wanted.iter().any(|w| w.1.ifname == **n))
            .cloned()
            .collect();
        for n in unwanted {
            self.links.vmacs.table.remove(&self.links.nl, &n).await;
            changed = true;
        }
        if changed {
            self.refresh_now().await;
        }
        self.sync_vmac_sockets(&wanted);
    }

    /// `vmac_xmit_base`: one send-only socket on the base per such macvlan.
    fn sync_vmac_sockets(&mut self, wanted: &[(String, Vmac, u8, Family)]) {
        let mut keep = Vec::new();
        for (base, vmac, _, fam) in wanted.iter().filter(|w| w.1.xmit_base) {
            let Some(index) = self.links.facts(base).map(|f| f.index) else {
                continue;
            };
            keep.push(vmac.ifname.clone());
            if self.links.vmacs.tx.get(&vmac.ifname).is_some_and(|(i, _)| *i == index) {
                continue;
            }
            match VrrpSocket::open_send_only(base, index, *fam) {
                Ok(s) => {
                    self.links.vmacs.tx.insert(vmac.ifname.clone(), (index, Arc::new(s)));
                }
                Err(e) => error!("VRRP send socket on {base} (vmac_xmit_base): {e}"),
            }
        }
        self.links.vmacs.tx.retain(|k, _| keep.contains(k));
    }

    /// Is `ifname` the macvlan of a `use_vmac` instance that we have not made
    /// (yet)? Then it is not ours: no socket, no VIP, no setting on it.
    pub(super) fn foreign_vmac(&self, ifname: &str) -> bool {
        self.cfg
            .instances
            .iter()
            .any(|i| i.vmac.as_ref().is_some_and(|v| v.ifname == ifname))
            && !self.links.vmacs.table.made.contains_key(ifname)
    }

    /// The base's send-only socket of a `vmac_xmit_base` instance `i`.
    pub(super) fn vmac_tx_socket(&self, i: usize) -> Option<Arc<VrrpSocket>> {
        let x = &self.insts.list[i];
        let v = x.cfg.vmac.as_ref().filter(|v| v.xmit_base)?;
        self.links.vmacs.tx.get(&v.ifname).map(|(_, s)| s.clone())
    }

    /// Exit: delete every macvlan we made, restoring the bases' settings.
    pub(super) async fn remove_all_vmacs(&mut self) {
        self.links.vmacs.tx.clear();
        self.links.vmacs.table.remove_all(&self.links.nl).await;
    }
}
