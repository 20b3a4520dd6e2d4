//! # Receive coalescing (in progress)
