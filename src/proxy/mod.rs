//! TEMPORARY placeholder until the data plane lands: the daemon's balancer API.
use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::sync::watch;

use crate::config::{Admin, VirtualServer};

#[derive(Debug)]
pub struct ProxyError(pub String);

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(serde::Serialize)]
pub struct VirtualServerStatus {
    pub name: String,
}

pub struct Balancer;

impl Balancer {
    pub async fn start(
        _servers: &[VirtualServer],
        _mastership: &HashMap<String, watch::Receiver<bool>>,
    ) -> Result<Balancer, ProxyError> {
        Err(ProxyError("the balancer is not built yet".into()))
    }
    pub fn status(&self) -> Vec<VirtualServerStatus> {
        Vec::new()
    }
    pub fn set_admin(&self, _vs: &str, _backend: SocketAddr, _admin: Admin) -> Result<(), ProxyError> {
        Err(ProxyError("the balancer is not built yet".into()))
    }
    pub async fn reload(
        &mut self,
        _servers: &[VirtualServer],
        _mastership: &HashMap<String, watch::Receiver<bool>>,
    ) -> Result<(), ProxyError> {
        Ok(())
    }
    pub async fn shutdown(self, _drain: std::time::Duration) {}
}
