"""The live dialect: the seed protocol with real-time push, framed by unsigned varints."""
