//! # AF_XDP backend
