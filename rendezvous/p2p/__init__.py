"""A libp2p host on Twisted: keys, secure channels, muxers and protocols."""
