"""Client library and command-line client for the live dialect."""
