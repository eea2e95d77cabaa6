"""Pure model of Pulse: events, ports, settings and errors. No I/O, no Flask, no boto3."""
