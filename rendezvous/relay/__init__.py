"""Circuit relay v2: the hop service, the stop protocol, resources, vouchers, and the client."""
