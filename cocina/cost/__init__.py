"""`cocina cost`: API vs on-premises vs cloud cost model (see docs/cost.md)."""
