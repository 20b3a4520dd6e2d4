//! # xdpos-config: the appliance's configuration
//!
//! What it is: the TOML schema ([`schema`]), deserialized with `deny_unknown_fields`, and its
//! validation as a whole ([`validate`]) before anything is touched. Every problem is reported at
//! once with the path and the value (`workers[2].cpu: core 17 does not exist (this host has 2)`).
//!
//! What it never does: touch the system. The facts validation needs about the host (CPUs,
//! interfaces, queues) are gathered by the caller and passed in as [`Host`].
//!
//! Entry points: [`parse`] (syntax and types), [`validate::validate`] (meaning), [`load`] (both).
#![forbid(unsafe_code)]

mod error;
pub mod schema;
pub mod validate;

pub use error::{ConfigError, Problem};
pub use schema::Config;
pub use validate::{Checked, Host};

/// Parses TOML into the schema (unknown keys are errors).
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        let at = e.span().map(|s| line_col(text, s.start));
        ConfigError::one(
            "",
            match at {
                Some((l, c)) => format!("line {l}, column {c}: {msg}"),
                None => msg,
            },
        )
    })
}

/// Parses and validates.
pub fn load(text: &str, host: &Host) -> Result<Checked, ConfigError> {
    validate::validate(&parse(text)?, host)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| before.len() - i).unwrap_or(before.len() + 1);
    (line, col)
}

#[cfg(test)]
mod tests;
