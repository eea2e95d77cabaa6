"""What drives projections: the SQLite tailer, the DynamoDB Streams poller, Lambda handlers."""
