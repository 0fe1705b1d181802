"""api-gateway: the shop's only public service."""
