//! Route and neighbour edits (`vswitchctl route-add`, `neigh-add`, ...).
//! They change the shared underlay, whose generation the PMDs check every
//! iteration: cached flows re-resolve their encapsulation at once, and an
//! edit returns only once the hardware rules it affected are replaced and
//! every PMD has moved on to the new tables.

use super::core::Switch;
use crate::config::underlay::offlink_gateway;
use crate::config::Role;
use crate::config::RouteMode;
use crate::datapath::SwitchError;
use crate::kernel::state::View;
use crate::kernel::KernelStatus;
use crate::net::Prefix;
use crate::offload_manager::manager::SyncReport;
use crate::underlay::{NeighSource, Neighbour, Route, RouteSource};
use std::collections::BTreeMap;
use std::net::IpAddr;

impl Switch {
    /// The port number of uplink `name`.
    ///
    /// # Errors
    /// [`SwitchError::Invalid`] for an unknown port or one that is not an uplink.
    pub fn uplink_number(&self, name: &str) -> Result<u32, SwitchError> {
        match self.ports.iter().find(|p| p.spec.name == name) {
            Some(p) if p.spec.role == Role::Uplink => Ok(p.number),
            Some(_) => Err(SwitchError::Invalid(format!("{name:?} is not an uplink"))),
            None => Err(SwitchError::Invalid(format!("no port named {name:?}"))),
        }
    }

    /// Adds or replaces a route (source: control); `port` is an uplink name.
    ///
    /// # Errors
    /// Bad prefix, gateway or port.
    pub fn add_route(&self, prefix: &str, via: Option<&str>, port: &str) -> Result<Option<SyncReport>, SwitchError> {
        if self.config.underlay.routes == RouteMode::Kernel {
            return Err(SwitchError::Invalid(
                "routes come from the kernel here ([underlay] routes = \"kernel\"): add it there (ip route add), \
                 or set routes = \"both\""
                    .into(),
            ));
        }
        let prefix: Prefix = prefix.parse()?;
        let prefix = prefix.network();
        let via = via
            .map(|v| v.parse::<IpAddr>().map_err(|_| SwitchError::Invalid(format!("{v:?} is not an IP address"))))
            .transpose()?;
        if via.is_some_and(|v| v.is_ipv4() != prefix.is_ipv4()) {
            return Err(SwitchError::Invalid("the gateway and the prefix must be the same address family".into()));
        }
        let port = self.uplink_number(port)?;
        let spec = self.ports.iter().find(|p| p.number == port).map(|p| &p.spec);
        if let Some(why) = via.zip(spec).and_then(|(v, spec)| offlink_gateway(v, spec)) {
            return Err(SwitchError::Invalid(why));
        }
        let since = self.underlay.generation();
        self.underlay.write(|t| {
            t.routes.retain(|r| !(r.prefix == prefix && operators(r.source)));
            t.routes.push(Route { prefix, via, port, source: RouteSource::Control, metric: 0 });
            ((), true)
        });
        tracing::info!(%prefix, ?via, port, "route added");
        self.underlay_changed(since)
    }

    /// Deletes a route that is not a connected one.
    ///
    /// # Errors
    /// When no such route has that prefix.
    pub fn del_route(&self, prefix: &str) -> Result<Option<SyncReport>, SwitchError> {
        let prefix: Prefix = prefix.parse()?;
        let prefix = prefix.network();
        let since = self.underlay.generation();
        let (removed, kernel) = self.underlay.write(|t| {
            let before = t.routes.len();
            t.routes.retain(|r| !(r.prefix == prefix && operators(r.source)));
            let removed = before != t.routes.len();
            let kernel = t.routes.iter().any(|r| r.prefix == prefix && r.source == RouteSource::Kernel);
            ((removed, kernel), removed)
        });
        if !removed && kernel {
            return Err(SwitchError::Invalid(format!(
                "{prefix} is a kernel route: delete it in the kernel (ip route del {prefix})"
            )));
        }
        if !removed {
            return Err(SwitchError::NotFound(format!(
                "no configured route {prefix} (connected routes come from uplink addresses)"
            )));
        }
        tracing::info!(%prefix, "route deleted");
        self.underlay_changed(since)
    }

    /// Adds or replaces a static neighbour.
    ///
    /// # Errors
    /// Bad address, MAC or port.
    pub fn add_neighbour(&self, ip: &str, mac: &str, port: &str) -> Result<Option<SyncReport>, SwitchError> {
        let ip: IpAddr = ip.parse().map_err(|_| SwitchError::Invalid(format!("{ip:?} is not an IP address")))?;
        let mac = crate::ofrule::parse_mac(mac)
            .ok_or_else(|| SwitchError::Invalid(format!("{mac:?} is not a MAC address")))?;
        let port = self.uplink_number(port)?;
        let since = self.underlay.generation();
        self.underlay.write(|t| {
            t.neighbours.insert(ip, Neighbour { mac, port, source: NeighSource::Control });
            ((), true)
        });
        tracing::info!(%ip, mac = %crate::ofrule::format_mac(&mac), port, "neighbour added");
        self.underlay_changed(since)
    }

    /// Deletes a neighbour (static or learned).
    ///
    /// # Errors
    /// When there is none for that address.
    pub fn del_neighbour(&self, ip: &str) -> Result<Option<SyncReport>, SwitchError> {
        let ip: IpAddr = ip.parse().map_err(|_| SwitchError::Invalid(format!("{ip:?} is not an IP address")))?;
        let kernel = self.underlay.read(|t| t.neighbours.get(&ip).is_some_and(|n| n.source == NeighSource::Kernel));
        if kernel {
            return Err(SwitchError::Invalid(format!(
                "{ip} is a kernel neighbour: change it in the kernel (ip neigh del {ip} dev ...)"
            )));
        }
        let since = self.underlay.generation();
        let removed = self.underlay.write(|t| {
            let r = t.neighbours.remove(&ip).is_some();
            // The kernel's entry an operator's one hid comes back.
            if let Some(k) = t.kernel_neighbours.get(&ip) {
                t.neighbours.insert(ip, *k);
            }
            (r, r)
        });
        if !removed {
            return Err(SwitchError::NotFound(format!("no neighbour {ip}")));
        }
        tracing::info!(%ip, "neighbour deleted");
        self.underlay_changed(since)
    }

    /// The kernel follower's view (`None`: only the counters changed) and
    /// status. Kernel routes are replaced as a whole when they differ;
    /// kernel neighbours replace learned ones, never an operator's. A change
    /// applies like a route-add (cached flows at once, offloaded flows
    /// make-before-break). Returns whether the tables changed.
    ///
    /// # Errors
    /// When the offload manager or a PMD does not answer.
    pub fn apply_kernel(&self, view: Option<View>, mut status: KernelStatus) -> Result<bool, SwitchError> {
        let since = self.underlay.generation();
        let changed = self.underlay.write(|t| {
            let mut changed = false;
            if let Some(view) = view {
                let old: Vec<&Route> = t.routes.iter().filter(|r| r.source == RouteSource::Kernel).collect();
                if old.len() != view.routes.len() || old.iter().zip(&view.routes).any(|(a, b)| *a != b) {
                    t.routes.retain(|r| r.source != RouteSource::Kernel);
                    t.routes.extend(view.routes);
                    changed = true;
                }
                let wanted: BTreeMap<IpAddr, Neighbour> = view.neighbours.into_iter().collect();
                t.neighbours.retain(|ip, n| {
                    let keep = n.source != NeighSource::Kernel || wanted.get(ip) == Some(n);
                    changed |= !keep;
                    keep
                });
                for (ip, n) in &wanted {
                    match t.neighbours.get(ip) {
                        Some(e) if e.is_static() || e == n => {}
                        _ => {
                            t.neighbours.insert(*ip, *n);
                            changed = true;
                        }
                    }
                }
                t.ignored_routes = view.ignored_routes;
                t.kernel_neighbours = wanted;
            }
            status.last_change_unix = if changed {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
            } else {
                t.kernel.as_ref().and_then(|k| k.last_change_unix)
            };
            t.kernel = Some(status);
            (changed, changed)
        });
        if changed {
            tracing::debug!("kernel underlay changed");
            self.underlay_changed(since)?;
        }
        Ok(changed)
    }
}

/// Routes an operator set (config, vswitchctl): the ones route-add replaces
/// and route-del removes.
fn operators(source: RouteSource) -> bool {
    matches!(source, RouteSource::Config | RouteSource::Control)
}

impl crate::kernel::KernelSink for Switch {
    fn apply_kernel(&self, view: Option<View>, status: KernelStatus) -> Result<(), String> {
        Switch::apply_kernel(self, view, status).map(|_| ()).map_err(|e| e.to_string())
    }
}
