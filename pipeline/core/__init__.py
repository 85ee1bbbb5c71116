"""The core: settings, object storage, envelope encryption and keys, sealed fields, identity, reason codes,
the clock, the inbox's layout. It imports nothing of DMP above it (not the index, nor any feature)."""
