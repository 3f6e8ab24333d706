"""MQTT contract v1: every topic alkomd publishes or reads, and every payload, in this package only.

This is the public API (docs/contract/ documents it, tests validate the payloads against the schemas
there): add fields, never rename or remove them. Topics are built and parsed only here (`topics`);
published topics never contain `+` or `#`; payloads (`outbound`) are compact UTF-8 JSON with ISO 8601
UTC times and a `msg_id` that consumers deduplicate on; what comes in is read by `inbound`, never raising.
"""
from __future__ import annotations

from alkomd.daemon.mqtt.contract.inbound import (
    EVENT_ACTIONS as EVENT_ACTIONS,
)
from alkomd.daemon.mqtt.contract.inbound import (
    UNIT_TYPES as UNIT_TYPES,
)
from alkomd.daemon.mqtt.contract.inbound import (
    BelowFix as BelowFix,
)
from alkomd.daemon.mqtt.contract.inbound import (
    BelowPosition as BelowPosition,
)
from alkomd.daemon.mqtt.contract.inbound import (
    BelowStatus as BelowStatus,
)
from alkomd.daemon.mqtt.contract.inbound import (
    CallProgress as CallProgress,
)
from alkomd.daemon.mqtt.contract.inbound import (
    ParsedEvent as ParsedEvent,
)
from alkomd.daemon.mqtt.contract.inbound import (
    StatusSetRequest as StatusSetRequest,
)
from alkomd.daemon.mqtt.contract.inbound import (
    TakenMarker as TakenMarker,
)
from alkomd.daemon.mqtt.contract.inbound import (
    epoch_us as epoch_us,
)
from alkomd.daemon.mqtt.contract.inbound import (
    parse_audit_head as parse_audit_head,
)
from alkomd.daemon.mqtt.contract.inbound import (
    parse_below_fix as parse_below_fix,
)
from alkomd.daemon.mqtt.contract.inbound import (
    parse_below_position as parse_below_position,
)
from alkomd.daemon.mqtt.contract.inbound import (
    parse_below_status as parse_below_status,
)
from alkomd.daemon.mqtt.contract.inbound import (
    parse_call_progress as parse_call_progress,
)
from alkomd.daemon.mqtt.contract.inbound import (
    parse_event as parse_event,
)
from alkomd.daemon.mqtt.contract.inbound import (
    parse_node_online as parse_node_online,
)
from alkomd.daemon.mqtt.contract.inbound import (
    parse_probe as parse_probe,
)
from alkomd.daemon.mqtt.contract.inbound import (
    parse_status_set as parse_status_set,
)
from alkomd.daemon.mqtt.contract.inbound import (
    parse_taken as parse_taken,
)
from alkomd.daemon.mqtt.contract.outbound import (
    LATEST_ONLY_KINDS as LATEST_ONLY_KINDS,
)
from alkomd.daemon.mqtt.contract.outbound import (
    DeviceHealth as DeviceHealth,
)
from alkomd.daemon.mqtt.contract.outbound import (
    EventOutcome as EventOutcome,
)
from alkomd.daemon.mqtt.contract.outbound import (
    UnitLabel as UnitLabel,
)
from alkomd.daemon.mqtt.contract.outbound import (
    alert_message as alert_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    alert_payload as alert_payload,
)
from alkomd.daemon.mqtt.contract.outbound import (
    audit_head_message as audit_head_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    call_new_payload as call_new_payload,
)
from alkomd.daemon.mqtt.contract.outbound import (
    call_state_message as call_state_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    call_state_payload as call_state_payload,
)
from alkomd.daemon.mqtt.contract.outbound import (
    clear_message as clear_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    counters_dict as counters_dict,
)
from alkomd.daemon.mqtt.contract.outbound import (
    device_status_message as device_status_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    dumps as dumps,
)
from alkomd.daemon.mqtt.contract.outbound import (
    emergency_message as emergency_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    escalation_message as escalation_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    escalation_payload as escalation_payload,
)
from alkomd.daemon.mqtt.contract.outbound import (
    event_result_message as event_result_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    handoff_message as handoff_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    health_payload as health_payload,
)
from alkomd.daemon.mqtt.contract.outbound import (
    link_probe_payload as link_probe_payload,
)
from alkomd.daemon.mqtt.contract.outbound import (
    new_msg_id as new_msg_id,
)
from alkomd.daemon.mqtt.contract.outbound import (
    position_message as position_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    radio_message as radio_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    rounded as rounded,
)
from alkomd.daemon.mqtt.contract.outbound import (
    state_msg_id as state_msg_id,
)
from alkomd.daemon.mqtt.contract.outbound import (
    state_payload as state_payload,
)
from alkomd.daemon.mqtt.contract.outbound import (
    status_set_message as status_set_message,
)
from alkomd.daemon.mqtt.contract.outbound import (
    takeover_messages as takeover_messages,
)
from alkomd.daemon.mqtt.contract.outbound import (
    unit_status_message as unit_status_message,
)
from alkomd.daemon.mqtt.contract.topics import (
    CallAml as CallAml,
)
from alkomd.daemon.mqtt.contract.topics import (
    CallEvent as CallEvent,
)
from alkomd.daemon.mqtt.contract.topics import (
    CallNew as CallNew,
)
from alkomd.daemon.mqtt.contract.topics import (
    CallTaken as CallTaken,
)
from alkomd.daemon.mqtt.contract.topics import (
    ConsoleTopic as ConsoleTopic,
)
from alkomd.daemon.mqtt.contract.topics import (
    Inbound as Inbound,
)
from alkomd.daemon.mqtt.contract.topics import (
    LinkProbe as LinkProbe,
)
from alkomd.daemon.mqtt.contract.topics import (
    NodeBelowAnchor as NodeBelowAnchor,
)
from alkomd.daemon.mqtt.contract.topics import (
    NodeBelowCall as NodeBelowCall,
)
from alkomd.daemon.mqtt.contract.topics import (
    NodeBelowState as NodeBelowState,
)
from alkomd.daemon.mqtt.contract.topics import (
    StatusSet as StatusSet,
)
from alkomd.daemon.mqtt.contract.topics import (
    UnitBelow as UnitBelow,
)
from alkomd.daemon.mqtt.contract.topics import (
    alert_topic as alert_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    audit_head_topic as audit_head_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    below_probe_topic as below_probe_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    below_unit_subscriptions as below_unit_subscriptions,
)
from alkomd.daemon.mqtt.contract.topics import (
    call_aml_topic as call_aml_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    call_event_result_topic as call_event_result_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    call_event_topic as call_event_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    call_new_topic as call_new_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    call_taken_topic as call_taken_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    call_topic as call_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    console_subscriptions as console_subscriptions,
)
from alkomd.daemon.mqtt.contract.topics import (
    device_status_topic as device_status_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    emergency_topic as emergency_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    health_topic as health_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    is_bulk_topic as is_bulk_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    link_probe_topic as link_probe_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    parse_console_topic as parse_console_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    parse_inbound as parse_inbound,
)
from alkomd.daemon.mqtt.contract.topics import (
    position_topic as position_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    probe_topic as probe_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    radio_level as radio_level,
)
from alkomd.daemon.mqtt.contract.topics import (
    radio_topic as radio_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    state_topic as state_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    status_set_topic as status_set_topic,
)
from alkomd.daemon.mqtt.contract.topics import (
    subscription_qos as subscription_qos,
)
from alkomd.daemon.mqtt.contract.topics import (
    subscriptions as subscriptions,
)
from alkomd.daemon.mqtt.contract.topics import (
    unit_status_topic as unit_status_topic,
)

CONTRACT_VERSION = 1
