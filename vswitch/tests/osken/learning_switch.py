"""A learning switch for OpenFlow 1.3 written against os-ken's library, in
the style of Ryu's simple_switch_13 (which os-ken 4.2 no longer ships):

- two tables, as multi-table controllers (Neutron's OVS agent, OVN) lay them
  out: table 0 sends every packet on to table 1 (goto_table), where the
  learning happens;
- on connect, table 1's table-miss entry (priority 0, no match) sends packets
  to the controller whole (OFPCML_NO_BUFFER);
- every PACKET_IN teaches the source MAC's port; a known destination gets a
  flow in table 1 (in_port, eth_dst, eth_src -> output) and the packet goes
  out there, an unknown one is flooded with PACKET_OUT;
- flow statistics are asked for every half second.

Counts go to the file named by VSWT_OSKEN_STATS after every event, as JSON,
for the test to read.
"""

import json
import os

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.lib.packet import ethernet, packet
from os_ken.ofproto import ofproto_v1_3


class LearningSwitch(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.macs = {}
        self.stats = {"switches": 0, "packet_ins": 0, "no_match": 0, "flows": 0, "packet_outs": 0,
                      "packet_in_tables": [], "flow_stats": []}
        self.datapaths = []
        hub.spawn(self._monitor)

    def _monitor(self):
        while True:
            for dp in self.datapaths:
                dp.send_msg(dp.ofproto_parser.OFPFlowStatsRequest(dp))
            hub.sleep(0.5)

    def _save(self):
        path = os.environ.get("VSWT_OSKEN_STATS")
        if path:
            with open(path + ".tmp", "w") as f:
                json.dump(self.stats, f)
            os.replace(path + ".tmp", path)

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def features(self, ev):
        dp = ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        self.stats["switches"] += 1
        self.stats["datapath_id"] = dp.id
        self.stats["n_tables"] = ev.msg.n_tables
        self.datapaths.append(dp)
        self._flow(dp, 0, 0, parser.OFPMatch(), [], goto=1)
        actions = [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)]
        self._flow(dp, 1, 0, parser.OFPMatch(), actions)
        self._save()

    def _flow(self, dp, table, priority, match, actions, goto=None):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        inst = []
        if actions:
            inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions))
        if goto is not None:
            inst.append(parser.OFPInstructionGotoTable(goto))
        dp.send_msg(parser.OFPFlowMod(datapath=dp, table_id=table, priority=priority, match=match,
                                      instructions=inst))
        self.stats["flows"] += 1

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        in_port = msg.match["in_port"]
        eth = packet.Packet(msg.data).get_protocols(ethernet.ethernet)[0]
        self.stats["packet_ins"] += 1
        if msg.reason == ofp.OFPR_NO_MATCH:
            self.stats["no_match"] += 1
        if msg.table_id not in self.stats["packet_in_tables"]:
            self.stats["packet_in_tables"].append(msg.table_id)
        table = self.macs.setdefault(dp.id, {})
        table[eth.src] = in_port
        out = table.get(eth.dst, ofp.OFPP_FLOOD)
        actions = [parser.OFPActionOutput(out)]
        if out != ofp.OFPP_FLOOD:
            match = parser.OFPMatch(in_port=in_port, eth_dst=eth.dst, eth_src=eth.src)
            self._flow(dp, 1, 1, match, actions)
        dp.send_msg(parser.OFPPacketOut(datapath=dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                                        actions=actions, data=msg.data))
        self.stats["packet_outs"] += 1
        self._save()

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def flow_stats(self, ev):
        self.stats["flow_stats"] = [
            {"table": s.table_id, "priority": s.priority, "packets": s.packet_count, "bytes": s.byte_count}
            for s in ev.msg.body
        ]
        self._save()
