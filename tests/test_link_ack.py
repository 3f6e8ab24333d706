"""The link acknowledges a call (QoS 1) only once it is handled: a process that dies before that gets it again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from conftest import Subscriber, loop_until, wait_until

from alkomd.daemon.config import MqttConfig
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.link import LinkEvents, MqttLink

POLRES = "gorontalo/kota-gorontalo"
CALLS = f"{POLRES}/call/new"


class _Calls(LinkEvents):
    """The calls a link hands over, and whether its subscriptions are in."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.ready = False

    def subscribed(self) -> None:
        self.ready = True

    def message(self, topic: str, payload: bytes, retain: bool) -> None:
        if topic == CALLS:
            self.payloads.append(payload)


def test_a_call_received_but_not_yet_handled_is_sent_again_to_the_node_after_it_died(
    broker: Broker, subscriber_factory: Callable[..., Subscriber]
) -> None:
    """Call A is handled (the loop ran): acknowledged. Call B reaches the link's inbox, but the loop does not run
    before the process dies (paho's thread stopped, the socket closed without a DISCONNECT, as at a SIGKILL). The node
    comes back (a restart, or its standby: the same client id and persistent session): B is delivered again, A not.
    paho's automatic PUBACK would have acknowledged B as it was queued, and B would be lost."""
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, tls=False, keepalive_s=5, reconnect_min_s=0.5, reconnect_max_s=2)
    gateway = subscriber_factory(broker.port, topic="gateway/none", client_id="gateway")
    loop = asyncio.new_event_loop()
    first = _Calls()
    link = MqttLink(cfg, POLRES, "test", loop, first, contract.subscriptions(POLRES, "polres"))
    try:
        link.start()
        loop_until(loop, lambda: first.ready, 20)
        gateway.client.publish(CALLS, b'{"call_id":"A-1"}', qos=1)
        loop_until(loop, lambda: first.payloads == [b'{"call_id":"A-1"}'], 20)
        gateway.client.publish(CALLS, b'{"call_id":"B-1"}', qos=1)
        wait_until(lambda: len(link.inbox) == 1, 20, "call B in the inbox, not handled: the loop is not running")
        wait_until(lambda: not link.client._out_packet, 20, "A's PUBACK written")
        link.client.loop_stop()  # the process dies: its network thread stops ...
        link.client.socket().close()  # ... and the kernel closes its socket
    finally:
        loop.close()
    loop = asyncio.new_event_loop()
    again = _Calls()
    link = MqttLink(cfg, POLRES, "test", loop, again, contract.subscriptions(POLRES, "polres"))
    try:
        link.start()
        loop_until(loop, lambda: b'{"call_id":"B-1"}' in again.payloads, 20)
        assert again.payloads == [b'{"call_id":"B-1"}']  # A, acknowledged once handled, is not sent again (it would come first)
    finally:
        link.stop()
        loop.close()
