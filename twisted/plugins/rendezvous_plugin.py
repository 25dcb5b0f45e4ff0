from twisted.application.service import ServiceMaker

rendezvous = ServiceMaker(  # type: ignore[no-untyped-call]
    "rendezvous",
    "rendezvous._tap",
    "libp2p rendezvous service with real-time push (live dialect)",
    "rendezvous",
)
