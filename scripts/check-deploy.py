#!/usr/bin/env python3
"""Checks the deployment manifests in deploy/ (run by scripts/test.sh with the virtualenv that
scripts/setup.sh makes, which holds kubernetes-validate from PyPI and its dependencies).

1. Every Kubernetes object in deploy/kubernetes/*.yaml validates strictly (unknown fields are
   errors) against the schemas kubernetes-validate bundles for KUBERNETES_VERSION, offline.
   Custom resources, which it has no schema for (it only warns and passes them), are checked
   against the schemas in deploy/schemas/ instead (the ServiceMonitor's CRD subset); a kind with
   neither fails.
2. The objects agree with each other and with the systemd unit: the DaemonSet mounts the
   ConfigMap that exists, runs with hostNetwork, has Guaranteed QoS with integer CPUs (the
   static CPU manager's condition for exclusive CPUs), probes /readyz and /healthz on the port
   the configuration's metrics endpoint listens on, adds exactly the unit's capabilities; the
   Service selects the DaemonSet's pods and the ServiceMonitor selects the Service and its port.
3. deploy/prometheus/prometheus-kubernetes.yml validates against deploy/schemas/ (Debian's
   promtool, which test.sh runs on the other scrape configuration, is built without Kubernetes
   service discovery), its regexes compile, and its relabelling keeps exactly the DaemonSet's
   pods (their app.kubernetes.io/name label) and their metrics port.

Exit status 0 when everything holds; every problem is printed.
"""
import glob
import json
import os
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBERNETES_VERSION = os.environ.get("KUBERNETES_VERSION", "1.30.0")
CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com-v1.json",
}
problems = []


def problem(msg):
    problems.append(msg)
    print("FAIL", msg)


def load_objects():
    objs = []
    files = sorted(glob.glob(os.path.join(ROOT, "deploy/kubernetes/*.yaml")))
    if not files:
        problem("no manifests in deploy/kubernetes")
    for f in files:
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc is not None:
                    objs.append((os.path.relpath(f, ROOT), doc))
    return objs


def validate_schemas(objs):
    for f, o in objs:
        key = (o.get("apiVersion"), o.get("kind"))
        name = f"{f}: {key[1]}/{o.get('metadata', {}).get('name')}"
        if key in CUSTOM:
            with open(os.path.join(ROOT, "deploy/schemas", CUSTOM[key])) as fh:
                schema = json.load(fh)
            errs = sorted(
                jsonschema.Draft202012Validator(schema).iter_errors(o), key=lambda e: e.path
            )
            for e in errs:
                problem(f"{name}: {'.'.join(map(str, e.path))}: {e.message}")
            if not errs:
                print(f"ok   {name} (CRD schema deploy/schemas/{CUSTOM[key]})")
            continue
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
            print(f"ok   {name} (Kubernetes {KUBERNETES_VERSION}, strict)")
        except kubernetes_validate.SchemaNotFoundError:
            problem(f"{name}: no schema for {key[0]} {key[1]} (add one to deploy/schemas)")
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as e:
            e = getattr(e, "caught", e)
            problem(f"{name}: {'.'.join(map(str, e.path))}: {e.message}")


def one(objs, kind):
    found = [o for _, o in objs if o.get("kind") == kind]
    if len(found) != 1:
        problem(f"expected one {kind}, found {len(found)}")
        return {}
    return found[0]


def unit_capabilities():
    path = os.path.join(ROOT, "deploy/systemd/xdpos.service")
    caps = {}
    with open(path) as fh:
        for line in fh:
            m = re.match(r"^(CapabilityBoundingSet|AmbientCapabilities)=(.*)$", line.strip())
            if m:
                caps[m.group(1)] = {c.removeprefix("CAP_") for c in m.group(2).split()}
    if caps.get("CapabilityBoundingSet") != caps.get("AmbientCapabilities"):
        problem("xdpos.service: CapabilityBoundingSet and AmbientCapabilities differ")
    return caps.get("CapabilityBoundingSet", set())


def metrics_port(cm):
    text = cm.get("data", {}).get("xdpos.toml", "")
    m = re.search(r'^\[metrics\]\s*\nlisten\s*=\s*"([^"]+)"', text, re.M)
    if not m:
        problem("ConfigMap xdpos.toml: no [metrics] listen")
        return None
    return int(m.group(1).rsplit(":", 1)[1])


def cross_check(objs):
    ds, cm = one(objs, "DaemonSet"), one(objs, "ConfigMap")
    svc, sm = one(objs, "Service"), one(objs, "ServiceMonitor")
    if not (ds and cm and svc and sm):
        return
    pod = ds["spec"]["template"]["spec"]
    labels = ds["spec"]["template"]["metadata"]["labels"]
    if not pod.get("hostNetwork"):
        problem("DaemonSet: hostNetwork is not true")
    cms = [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
    if cm["metadata"]["name"] not in cms:
        problem(f"DaemonSet mounts ConfigMaps {cms}, not {cm['metadata']['name']}")
    port = metrics_port(cm)
    for c in pod["containers"]:
        res = c.get("resources", {})
        req, lim = res.get("requests", {}), res.get("limits", {})
        for r in ("cpu", "memory"):
            if r not in req or req.get(r) != lim.get(r):
                problem(f"container {c['name']}: {r} requests != limits (not Guaranteed QoS)")
        if not re.fullmatch(r"[1-9][0-9]*", str(lim.get("cpu", ""))):
            problem(f"container {c['name']}: cpu {lim.get('cpu')!r} is not an integer count")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if port is not None and ports.get("metrics") != port:
            problem(f"container port 'metrics' {ports.get('metrics')} != config's {port}")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            got = c.get(probe, {}).get("httpGet", {})
            if got.get("path") != path or got.get("port") not in ("metrics", port):
                problem(f"container {c['name']}: {probe} is {got}, want {path} on metrics")
        caps = c.get("securityContext", {}).get("capabilities", {})
        if caps.get("drop") != ["ALL"]:
            problem(f"container {c['name']}: capabilities do not drop ALL first")
        want = unit_capabilities()
        if set(caps.get("add", [])) != want:
            problem(f"container {c['name']}: adds {sorted(caps.get('add', []))}, "
                    f"the systemd unit grants {sorted(want)}")
    if any(labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
        problem("Service selector does not select the DaemonSet's pods")
    svc_labels = svc["metadata"].get("labels", {})
    sel = sm["spec"]["selector"].get("matchLabels", {})
    if any(svc_labels.get(k) != v for k, v in sel.items()):
        problem("ServiceMonitor selector does not select the Service")
    names = {p["name"] for p in svc["spec"]["ports"]}
    for e in sm["spec"]["endpoints"]:
        if e.get("port") not in names:
            problem(f"ServiceMonitor endpoint port {e.get('port')!r} is not a Service port")
    ns = sm["spec"].get("namespaceSelector", {}).get("matchNames", [])
    if svc["metadata"].get("namespace") not in ns:
        problem("ServiceMonitor namespaceSelector misses the Service's namespace")


def check_prometheus_kubernetes(objs):
    path = "deploy/prometheus/prometheus-kubernetes.yml"
    with open(os.path.join(ROOT, path)) as fh:
        cfg = yaml.safe_load(fh)
    with open(os.path.join(ROOT, "deploy/schemas/prometheus-kubernetes-sd.json")) as fh:
        schema = json.load(fh)
    errs = list(jsonschema.Draft202012Validator(schema).iter_errors(cfg))
    for e in errs:
        problem(f"{path}: {'.'.join(map(str, e.path))}: {e.message}")
    if errs:
        return
    ds = one(objs, "DaemonSet")
    if not ds:
        return
    labels = ds["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for c in ds["spec"]["template"]["spec"]["containers"]
             for p in c.get("ports", [])}
    for job in cfg["scrape_configs"]:
        keeps = {}
        for r in job.get("relabel_configs", []):
            try:
                re.compile(r.get("regex", "(.*)"))
            except re.error as e:
                problem(f"{path}: job {job['job_name']}: regex {r.get('regex')!r}: {e}")
            if r.get("action") == "keep":
                keeps[tuple(r.get("source_labels", []))] = r.get("regex", "(.*)")
        name = keeps.get(("__meta_kubernetes_pod_label_app_kubernetes_io_name",))
        if name is None or not re.fullmatch(name, labels.get("app.kubernetes.io/name", "")):
            problem(f"{path}: job {job['job_name']} does not keep the DaemonSet's pods")
        port = keeps.get(("__meta_kubernetes_pod_container_port_name",))
        if port is None or not any(re.fullmatch(port, p) for p in ports):
            problem(f"{path}: job {job['job_name']} does not keep the metrics port {ports}")
    if not problems:
        print(f"ok   {path} (schema deploy/schemas/prometheus-kubernetes-sd.json, relabelling)")


def main():
    objs = load_objects()
    validate_schemas(objs)
    cross_check(objs)
    check_prometheus_kubernetes(objs)
    if problems:
        print(f"{len(problems)} problem(s) in deploy/")
        return 1
    print(f"deploy/: {len(objs)} objects valid and consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
