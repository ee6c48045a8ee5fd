//! sentinel-watch's metrics, declared in one place.
