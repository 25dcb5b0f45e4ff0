"""rendezvous: a libp2p rendezvous service daemon with real-time push, on Twisted."""

__version__ = "0.1.0"
