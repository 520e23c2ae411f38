//! Route and neighbour edits (`vswitchctl route-add`, `neigh-add`, ...).
//! They change the shared underlay, whose generation the PMDs check every
//! iteration: cached flows re-resolve their encapsulation at once, and an
//! edit returns only once the hardware rules it affected are replaced and
//! every PMD has moved on to the new tables.

use super::{Switch, SwitchError};
use crate::config::underlay::offlink_gateway;
use crate::config::Role;
use crate::net::Prefix;
use crate::offloading::manager::SyncReport;
use crate::underlay::{Neighbour, Route, RouteSource};
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
        self.underlay.write(|t| {
            t.routes.retain(|r| !(r.prefix == prefix && r.source != RouteSource::Connected));
            t.routes.push(Route { prefix, via, port, source: RouteSource::Control });
            ((), true)
        });
        tracing::info!(%prefix, ?via, port, "route added");
        self.underlay_changed()
    }

    /// Deletes a route that is not a connected one.
    ///
    /// # Errors
    /// When no such route has that prefix.
    pub fn del_route(&self, prefix: &str) -> Result<Option<SyncReport>, SwitchError> {
        let prefix: Prefix = prefix.parse()?;
        let prefix = prefix.network();
        let removed = self.underlay.write(|t| {
            let before = t.routes.len();
            t.routes.retain(|r| !(r.prefix == prefix && r.source != RouteSource::Connected));
            let removed = before != t.routes.len();
            (removed, removed)
        });
        if !removed {
            return Err(SwitchError::NotFound(format!(
                "no configured route {prefix} (connected routes come from uplink addresses)"
            )));
        }
        tracing::info!(%prefix, "route deleted");
        self.underlay_changed()
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
        self.underlay.write(|t| {
            t.neighbours.insert(ip, Neighbour { mac, port, is_static: true });
            ((), true)
        });
        tracing::info!(%ip, mac = %crate::ofrule::format_mac(&mac), port, "neighbour added");
        self.underlay_changed()
    }

    /// Deletes a neighbour (static or learned).
    ///
    /// # Errors
    /// When there is none for that address.
    pub fn del_neighbour(&self, ip: &str) -> Result<Option<SyncReport>, SwitchError> {
        let ip: IpAddr = ip.parse().map_err(|_| SwitchError::Invalid(format!("{ip:?} is not an IP address")))?;
        let removed = self.underlay.write(|t| {
            let r = t.neighbours.remove(&ip).is_some();
            (r, r)
        });
        if !removed {
            return Err(SwitchError::NotFound(format!("no neighbour {ip}")));
        }
        tracing::info!(%ip, "neighbour deleted");
        self.underlay_changed()
    }
}
