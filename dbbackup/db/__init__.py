"""Database connectors: one module per engine family."""
