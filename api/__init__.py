"""HTTP entry points: the Flask app factory, REST endpoints and the GraphQL schema."""
