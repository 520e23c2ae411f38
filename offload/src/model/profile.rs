//! What a model e-switch takes: its [`Profile`].

use crate::rte_flow::ItemKind;

/// What the model takes: items, actions, table size, encap size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub items: Vec<ItemKind>,
    pub actions: Vec<ActionKind>,
    /// Rules beyond this many are refused with ENOSPC (a full table).
    pub max_rules: usize,
    /// VXLAN_ENCAP definitions longer than this are refused (mlx5: 132).
    pub max_encap_bytes: usize,
    /// Highest group number.
    pub max_group: u32,
}

impl Default for Profile {
    /// Everything the vocabulary can say, 65536 rules, 132-byte encap headers.
    fn default() -> Self {
        Self {
            name: "full".into(),
            items: vec![
                ItemKind::RepresentedPort,
                ItemKind::Eth,
                ItemKind::Vlan,
                ItemKind::Ipv4,
                ItemKind::Ipv6,
                ItemKind::Udp,
                ItemKind::Tcp,
                ItemKind::Vxlan,
            ],
            actions: ActionKind::ALL.to_vec(),
            max_rules: 65536,
            max_encap_bytes: crate::rte_flow::MAX_ENCAP_HEADER,
            max_group: 1024,
        }
    }
}

impl Profile {
    /// Without VXLAN decapsulation (a device that cannot terminate tunnels).
    pub fn without(mut self, action: ActionKind) -> Self {
        self.actions.retain(|a| *a != action);
        self
    }
}

/// An action kind, as profiles name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    Count,
    Age,
    VxlanDecap,
    VxlanEncap,
    PushVlan,
    PopVlan,
    SetVlanVid,
    SetVlanPcp,
    SetMac,
    Drop,
    RepresentedPort,
    Jump,
}

impl ActionKind {
    pub const ALL: [ActionKind; 12] = [
        ActionKind::Count,
        ActionKind::Age,
        ActionKind::VxlanDecap,
        ActionKind::VxlanEncap,
        ActionKind::PushVlan,
        ActionKind::PopVlan,
        ActionKind::SetVlanVid,
        ActionKind::SetVlanPcp,
        ActionKind::SetMac,
        ActionKind::Drop,
        ActionKind::RepresentedPort,
        ActionKind::Jump,
    ];

    /// The name used in profiles (configuration).
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Count => "count",
            ActionKind::Age => "age",
            ActionKind::VxlanDecap => "vxlan_decap",
            ActionKind::VxlanEncap => "vxlan_encap",
            ActionKind::PushVlan => "of_push_vlan",
            ActionKind::PopVlan => "of_pop_vlan",
            ActionKind::SetVlanVid => "of_set_vlan_vid",
            ActionKind::SetVlanPcp => "of_set_vlan_pcp",
            ActionKind::SetMac => "set_mac",
            ActionKind::Drop => "drop",
            ActionKind::RepresentedPort => "represented_port",
            ActionKind::Jump => "jump",
        }
    }
}
