//! Target of the configuration parser and validator (`xdpos_config`): arbitrary text (seeded
//! with the example files) through `parse`, then `validate` against an unknown host and a
//! small known one.
//!
//! Invariants: no panic (the parser reports line and column from spans, the validator indexes
//! lists and splits strings the file chose); a refusal lists at least one problem, each with a
//! message, and prints; validation is deterministic.

use std::collections::HashMap;

use xdpos_config::{parse, validate, Host};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(cfg) = parse(&text) else {
        let e = parse(&text).expect_err("parsing is deterministic");
        assert!(!e.problems.is_empty() && !e.to_string().is_empty());
        return;
    };
    let host = Host {
        cpus: Some(2),
        interfaces: Some(HashMap::from([
            ("eth0".to_string(), Some(1)),
            ("eth1".to_string(), Some(2)),
            ("veth0".to_string(), None),
        ])),
    };
    for h in [Host::unknown(), host] {
        match validate::validate(&cfg, &h) {
            Ok(_) => assert!(validate::validate(&cfg, &h).is_ok(), "deterministic"),
            Err(e) => {
                assert!(!e.problems.is_empty(), "a refusal names a problem");
                for p in &e.problems {
                    assert!(!p.message.is_empty(), "problem at {:?} without a message", p.path);
                }
                assert_eq!(validate::validate(&cfg, &h).map(|_| ()), Err(e.clone()));
                let _ = e.to_string();
            }
        }
    }
}
