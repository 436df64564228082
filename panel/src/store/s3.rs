//! S3-compatible remote store (being written).
