//! # In-memory port pair (unit-test backend)
