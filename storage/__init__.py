"""Adapters behind the domain's ports: SQLite (embedded default) and DynamoDB."""
