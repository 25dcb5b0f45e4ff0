"""A STUN Binding responder (RFC 8489) for browsers behind NATs: the relay answers
Binding requests with the source address it saw (``twistd rendezvous-relay --stun``)
and registers itself in the fleet's ``rendezvous/stun`` namespace."""
