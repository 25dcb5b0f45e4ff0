from twisted.application.service import ServiceMaker

rendezvous_relay = ServiceMaker(  # type: ignore[no-untyped-call]
    "rendezvous-relay",
    "rendezvous._relay_tap",
    "libp2p circuit relay v2 node (hop and stop) with limits, ACL and metrics",
    "rendezvous-relay",
)
