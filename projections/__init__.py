"""Pure projection logic: recorded events in, read-model changes out. No I/O."""
