//! # xdpos-config: the appliance's configuration
//!
//! TOML deserialized with `deny_unknown_fields` and validated as a whole before anything is
//! touched; errors name the path and the value. (Grows with the appliance issue.)
#![forbid(unsafe_code)]
