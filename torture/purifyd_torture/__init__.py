"""Fault injection against a real purifyd: kill -9 during a burst, a full outbox, a read-only
remount, malformed control requests and a corpus of hostile files (torture/README.md)."""
