"""Patient notifications: outbox rows composed into messages, delivered by email, SMS or the local log sink."""
