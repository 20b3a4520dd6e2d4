//! The Kubernetes start script (`start.sh` in deploy/kubernetes/configmap.yaml) run by `sh`:
//! worker CPU indices become the CPUs the container may run on, in order, and a configuration
//! that asks for more CPUs than the pod has is refused with a clear message; and the whole
//! ConfigMap run as the DaemonSet runs it, in a namespace (probes, service, SIGTERM). (The manifests'
//! schemas and cross-checks are scripts/check-deploy.py's, run by scripts/test.sh; the
//! ConfigMap's configuration is validated by config/tests/http_services.rs.)
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The `key: |` block of the ConfigMap, de-indented.
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines.next().unwrap_or_else(|| panic!("no {key} in the ConfigMap"));
    let indent = head.len() - head.trim_start().len();
    let mut out = String::new();
    for l in lines {
        if !l.trim().is_empty() && l.len() - l.trim_start().len() <= indent {
            break;
        }
        out.push_str(l.get(indent + 2..).unwrap_or(""));
        out.push('\n');
    }
    out
}

/// Runs start.sh in dry-run mode with `cpus` as the container's CPU list.
fn start_sh(cpus: &str) -> (bool, String, String) {
    let yaml = std::fs::read_to_string(root().join("deploy/kubernetes/configmap.yaml")).unwrap();
    let dir = std::env::temp_dir().join(format!("xdpos-deploy-{}-{cpus}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("xdpos.toml"), block(&yaml, "xdpos.toml")).unwrap();
    std::fs::write(dir.join("start.sh"), block(&yaml, "start.sh")).unwrap();
    let out = Command::new("sh")
        .arg(dir.join("start.sh"))
        .env("XDPOS_CONFIG", dir.join("xdpos.toml"))
        .env("XDPOS_RUN_DIR", dir.join("run"))
        .env("XDPOS_CPUS", cpus)
        .env("XDPOS_DRY_RUN", "1")
        .output()
        .expect("run sh");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn worker_cpus(toml: &str) -> Vec<String> {
    toml.lines().filter(|l| l.starts_with("cpu = ")).map(|l| l[6..].to_string()).collect()
}

#[test]
fn start_sh_maps_worker_indices_onto_the_pods_cpus() {
    let (ok, out, err) = start_sh("6-7");
    assert!(ok, "{err}");
    assert_eq!(worker_cpus(&out), ["6", "7"]);
    // Everything else is passed through unchanged.
    assert!(out.contains("[[services]]\nkind = \"http\""), "{out}");
    let (ok, out, err) = start_sh("3,9");
    assert!(ok, "{err}");
    assert_eq!(worker_cpus(&out), ["3", "9"]);
    let (ok, out, err) = start_sh("2,4-5,8");
    assert!(ok, "{err}");
    assert_eq!(worker_cpus(&out), ["2", "4"]);
}

#[test]
fn start_sh_refuses_a_pod_with_fewer_cpus_than_workers() {
    let (ok, _, err) = start_sh("5");
    assert!(!ok);
    assert!(err.contains("start.sh: cpu index 1, but this pod has 1 CPUs (5 )"), "{err}");
}

/// The ConfigMap's configuration run the way the DaemonSet runs it: `start.sh` (CPU indices
/// mapped, `xdpos check-config`, then `exec xdpos run`) in a namespace whose `eth1` is a
/// two-queue veth, a kernel peer at the configuration's gateway 192.0.2.1 on the other end.
/// The probes' endpoints answer on the node address (`0.0.0.0:9464`), the HTTP service answers
/// at the service address, and SIGTERM drains and detaches.
#[test]
fn the_configmap_runs_under_start_sh_like_the_daemonset() {
    use xdpos::rig::Netns;
    use xdpos_tests::{assert_no_xdp, sweep, xdpos_bin, Child, DEADLINE};

    sweep();
    let node = Netns::create("kn").unwrap();
    let peer = Netns::create("kp").unwrap();
    xdpos::rig::run(Command::new("ip").args([
        "link",
        "add",
        "eth1",
        "netns",
        node.name(),
        "numrxqueues",
        "2",
        "numtxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "p0",
        "netns",
        peer.name(),
        "numrxqueues",
        "2",
        "numtxqueues",
        "2",
    ]))
    .unwrap();
    node.sh("ip addr add 10.77.0.2/24 dev eth1 && ip link set eth1 up").unwrap();
    peer.sh("ip addr add 192.0.2.1/24 dev p0 && ip link set p0 up && \
         ethtool -K p0 tx off tso off gso off >/dev/null")
        .unwrap();

    let yaml = std::fs::read_to_string(root().join("deploy/kubernetes/configmap.yaml")).unwrap();
    let dir = std::env::temp_dir().join(format!("xdpos-deploy-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("xdpos.toml"), block(&yaml, "xdpos.toml")).unwrap();
    std::fs::write(dir.join("start.sh"), block(&yaml, "start.sh")).unwrap();
    let bin = xdpos_bin();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", node.name(), "sh"])
        .arg(dir.join("start.sh"))
        .env("PATH", path)
        .env("XDPOS_CONFIG", dir.join("xdpos.toml"))
        .env("XDPOS_RUN_DIR", dir.join("run"))
        .env("XDPOS_CPUS", "0-1");
    let mut child = Child::spawn(cmd);
    let ready = child.wait_line("ready:", DEADLINE);
    let probe = |p: &str| {
        node.sh(&format!("curl -s -o /dev/null -w '%{{http_code}}' http://10.77.0.2:9464{p}"))
            .unwrap_or_default()
    };
    let (readyz, healthz) = (probe("/readyz"), probe("/healthz"));
    let body = peer.sh("curl -s --max-time 5 http://192.0.2.80/").unwrap_or_default();
    let mapped = std::fs::read_to_string(dir.join("run/xdpos.toml")).unwrap_or_default();
    child.signal(rustix::process::Signal::TERM);
    let st = child.wait(DEADLINE);
    assert_no_xdp(&node);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ready.is_some(), "start.sh did not bring xdpos up: {:?}", child.seen);
    assert_eq!(worker_cpus(&mapped), ["0", "1"], "{mapped}");
    assert_eq!((readyz.as_str(), healthz.as_str()), ("200", "200"), "the probes' endpoints");
    assert_eq!(body, "hello from xdpos\n", "the HTTP service at the service address");
    assert!(st.is_some_and(|s| s.success()), "exit after SIGTERM: {st:?} {:?}", child.seen);
}
