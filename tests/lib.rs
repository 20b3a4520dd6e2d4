//! Shared helpers of the integration tests.
#![forbid(unsafe_code)]
