"""The mock venue: wire protocol, market generator, simulator plugin and feed client."""
