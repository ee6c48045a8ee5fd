//! health-agent's metrics, declared in one place.
