//! # Configuration errors
//!
//! Validation reports **every** problem of a file at once, each as the path of the offending
//! value and what is wrong with it, so an operator fixes a file in one pass:
//!
//! ```text
//! workers[2].cpu: core 17 does not exist (this host has 2)
//! services[0].listen: "10.0.0.9:7" is not an address of the appliance (interfaces[0] has 10.0.0.2)
//! ```

use std::fmt;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `workers[2].cpu`, or empty for the file as a whole (a TOML syntax error).
    pub path: String,
    /// What is wrong, naming the value.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything wrong with a configuration (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// An error with one problem.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { problems: vec![Problem { path: path.into(), message: message.into() }] }
    }
}
