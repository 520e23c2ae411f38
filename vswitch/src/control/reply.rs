//! What each request answers, as types. They serialize through
//! `serde_json::Value` (whose objects keep their keys sorted), so the reply
//! bytes are the same as the `json!` literals they replace: scripts that read
//! them see no change (the tests below hold each to its old text).

use crate::datapath::RevalidateReport;
use crate::offload_manager::manager::SyncReport;
use crate::switch::RouteView;
use serde::Serialize;

/// Said when a rule edit is made in software but the offload manager did not
/// confirm the hardware side in time.
const OFFLOAD_PENDING: &str = "applied in software; the offload manager did not answer in time, so hardware rules of \
                               flows revalidated out go when it catches up (offload-show)";

/// How a rule edit left the cached flows.
#[derive(Debug, Serialize)]
pub struct FlowsAfterEdit {
    pub flows_kept: usize,
    pub flows_removed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offload_pending: Option<&'static str>,
}

impl From<&RevalidateReport> for FlowsAfterEdit {
    fn from(r: &RevalidateReport) -> Self {
        Self {
            flows_kept: r.kept,
            flows_removed: r.removed,
            offload_pending: r.offload_pending.then_some(OFFLOAD_PENDING),
        }
    }
}

/// `add-rule`.
#[derive(Debug, Serialize)]
pub struct RuleAdded {
    pub id: u64,
    #[serde(flatten)]
    pub flows: FlowsAfterEdit,
}

/// `add-rules`.
#[derive(Debug, Serialize)]
pub struct RulesAdded {
    pub added: usize,
    pub first_id: Option<u64>,
    #[serde(flatten)]
    pub flows: FlowsAfterEdit,
}

/// `del-rule`.
#[derive(Debug, Serialize)]
pub struct RulesDeleted {
    pub deleted: usize,
    #[serde(flatten)]
    pub flows: FlowsAfterEdit,
}

/// `route-add`: the routes after it, and what the offload manager did.
#[derive(Debug, Serialize)]
pub struct RouteAdded {
    pub routes: Vec<RouteView>,
    pub offload: Option<SyncReport>,
}

/// `route-del`, `neigh-del`: what went, and what the offload manager did.
#[derive(Debug, Serialize)]
pub struct Deleted<'a> {
    pub deleted: &'a str,
    pub offload: Option<SyncReport>,
}

/// `neigh-add`.
#[derive(Debug, Serialize)]
pub struct NeighbourAdded<'a> {
    pub added: &'a str,
    pub offload: Option<SyncReport>,
}

/// `reload`: the rules now in force, how the flows fared, and the sections
/// that differ but wait for a restart.
#[derive(Debug, Serialize)]
pub struct Reloaded {
    pub rules: usize,
    pub flows_kept: usize,
    pub flows_removed: usize,
    pub not_applied: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text<T: Serialize>(v: &T) -> String {
        serde_json::to_value(v).expect("value").to_string()
    }

    #[test]
    fn replies_are_byte_for_byte_the_old_json() {
        let report = RevalidateReport { kept: 3, removed: 1, offload_pending: false };
        let pending = RevalidateReport { offload_pending: true, ..report };
        let old = |mut v: serde_json::Value, r: &RevalidateReport| {
            if r.offload_pending {
                v["offload_pending"] = json!(OFFLOAD_PENDING);
            }
            v.to_string()
        };
        for r in [&report, &pending] {
            assert_eq!(
                text(&RuleAdded { id: 7, flows: r.into() }),
                old(json!({"id": 7, "flows_kept": r.kept, "flows_removed": r.removed}), r)
            );
            assert_eq!(
                text(&RulesAdded { added: 2, first_id: Some(7), flows: r.into() }),
                old(json!({"added": 2, "first_id": Some(7), "flows_kept": r.kept, "flows_removed": r.removed}), r)
            );
            assert_eq!(
                text(&RulesDeleted { deleted: 1, flows: r.into() }),
                old(json!({"deleted": 1, "flows_kept": r.kept, "flows_removed": r.removed}), r)
            );
        }
        let empty: Option<u64> = None;
        assert_eq!(
            text(&RulesAdded { added: 0, first_id: None, flows: (&report).into() }),
            json!({"added": 0, "first_id": empty, "flows_kept": 3, "flows_removed": 1}).to_string()
        );
        let sync = Some(SyncReport { replaced: 2, unchanged: 5 });
        let route =
            RouteView { prefix: "10.0.0.0/8".into(), via: None, port: "uplink0".into(), source: "control", metric: 0 };
        let routes = serde_json::to_value(vec![route.clone()]).expect("routes");
        assert_eq!(
            text(&RouteAdded { routes: vec![route], offload: sync }),
            json!({"routes": routes, "offload": sync}).to_string()
        );
        assert_eq!(
            text(&Deleted { deleted: "10.0.0.0/8", offload: None }),
            json!({"deleted": "10.0.0.0/8", "offload": None::<SyncReport>}).to_string()
        );
        assert_eq!(
            text(&NeighbourAdded { added: "198.18.0.2", offload: sync }),
            json!({"added": "198.18.0.2", "offload": sync}).to_string()
        );
        assert_eq!(
            text(&Reloaded { rules: 4, flows_kept: 3, flows_removed: 1, not_applied: vec!["datapath"] }),
            json!({"rules": 4, "flows_kept": 3, "flows_removed": 1, "not_applied": ["datapath"]}).to_string()
        );
    }
}
