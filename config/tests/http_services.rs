//! The HTTP service keys (`body`, `body_size`, `path`), every shipped example (whatever its
//! name), and the configuration the Kubernetes manifests ship in their ConfigMap.
#![forbid(unsafe_code)]

use std::path::Path;

use xdpos_config::schema::ServiceKind;
use xdpos_config::{load, Host};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root")
}

fn problems(text: &str) -> Vec<String> {
    match load(text, &Host::unknown()) {
        Ok(c) => panic!("expected problems, got {c:?}"),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

const BASE: &str = r#"
[[interfaces]]
name = "eth1"
addresses = ["192.0.2.20/24"]

[[workers]]
cpu = 0
queues = ["eth1:0"]
"#;

#[test]
fn every_example_in_the_directory_validates() {
    let dir = root().join("config/examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).unwrap();
            load(&text, &Host::unknown()).unwrap_or_else(|e| panic!("{}:\n{e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 4, "found {n} examples in {}", dir.display());
}

#[test]
fn the_web_example_resolves_its_http_services() {
    let text = std::fs::read_to_string(root().join("config/examples/web.toml")).unwrap();
    let c = load(&text, &Host::unknown()).unwrap();
    assert_eq!(c.services.len(), 2);
    assert!(c.services.iter().all(|s| s.kind == ServiceKind::Http));
    assert!(c.services[0].body.as_deref().unwrap().contains("userspace"));
    assert_eq!(c.services[1].body_size, Some(1 << 20));
    assert_eq!(c.services[1].path.as_deref(), Some("/1m"));
    assert_eq!(c.services[1].listen.port(), 8080);
}

#[test]
fn http_keys_are_checked_with_their_paths() {
    let svc = |extra: &str| {
        format!("{BASE}\n[[services]]\nkind = \"http\"\nlisten = \"0.0.0.0:80\"\n{extra}\n")
    };
    let p = problems(&svc("body = \"x\"\nbody_size = 10"));
    assert_eq!(p, ["services[0].body_size: 10: give body or body_size, not both"]);
    let p = problems(&svc("body_size = 100000000"));
    assert!(p[0].starts_with("services[0].body_size: 100000000 bytes is above the limit"), "{p:?}");
    for bad in ["index.html", "/a b", "/a?b", ""] {
        let p = problems(&svc(&format!("path = {bad:?}")));
        assert!(p[0].starts_with("services[0].path: "), "{bad:?}: {p:?}");
        assert!(p[0].contains("not an origin-form path"), "{p:?}");
    }
    let echo = format!(
        "{BASE}\n[[services]]\nkind = \"tcp-echo\"\nlisten = \"0.0.0.0:7\"\npath = \"/\"\n\
         body_size = 3\n"
    );
    let p = problems(&echo);
    assert!(
        p.contains(
            &"services[0].body_size: only an http service has a body_size, not tcp-echo"
                .to_string()
        ),
        "{p:?}"
    );
    assert!(
        p.contains(&"services[0].path: only an http service has a path, not tcp-echo".to_string()),
        "{p:?}"
    );
    let p = problems(&svc("pth = \"/\""));
    assert!(p[0].contains("unknown field `pth`"), "{p:?}");
    // The good spellings pass.
    load(&svc("path = \"/index.html\"\nbody_size = 0"), &Host::unknown()).unwrap();
}

/// The `xdpos.toml: |` block of a ConfigMap manifest, de-indented (the manifests are plain
/// YAML written by hand: the block runs to the first less-indented line).
fn configmap_toml(yaml: &str, key: &str) -> Option<String> {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines.next()?;
    let indent = head.len() - head.trim_start().len();
    let mut out = String::new();
    for l in lines {
        if !l.trim().is_empty() && l.len() - l.trim_start().len() <= indent {
            break;
        }
        out.push_str(l.get(indent + 2..).unwrap_or(""));
        out.push('\n');
    }
    Some(out)
}

#[test]
fn the_kubernetes_configmap_carries_a_valid_configuration() {
    let path = root().join("deploy/kubernetes/configmap.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let text = configmap_toml(&yaml, "xdpos.toml").expect("an xdpos.toml key");
    let c = load(&text, &Host::unknown())
        .unwrap_or_else(|e| panic!("{}:\n{e}\n{text}", path.display()));
    // The probes and the scrape reach the endpoint from outside the node.
    assert_eq!(c.metrics.to_string(), "0.0.0.0:9464");
    assert!(c.services.iter().any(|s| s.kind == ServiceKind::Http));
}
