//! backup-agent's metrics, declared in one place.
