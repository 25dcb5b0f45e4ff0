"""The standard dialect: libp2p rendezvous `/rendezvous/1.0.0` (and canvas's copy of it)."""
