#!/usr/bin/env python3
"""End-to-end check of the monitoring side, run by ./dev test against the local stack:
a real Prometheus (with compose/prometheus/prometheus.yml, targets pointed at ./dev's ports)
must see every daemon up and the key series; every metric name in the Grafana dashboard must be
one the daemons actually export (checked against their /metrics)."""
import json
import re
import sys
import time
import urllib.parse
import urllib.request

PROM = sys.argv[1]            # http://127.0.0.1:19090
DASHBOARD = sys.argv[2]       # compose/grafana/dashboards/outrigger.json
DAEMONS = sys.argv[3:]        # 127.0.0.1:19401 ...

def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()

def fail(msg):
    print("monitoring check FAILED: " + msg, file=sys.stderr)
    sys.exit(1)

# 1. Every daemon target is up in Prometheus.
deadline = time.time() + 90
while True:
    try:
        targets = json.loads(get(PROM + "/api/v1/targets"))["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
    except Exception as e:  # not ready yet
        health = {"error": str(e)}
    if len(health) == 4 and all(h == "up" for h in health.values()):
        break
    if time.time() > deadline:
        fail("targets not all up: %s" % health)
    time.sleep(1)
print("prometheus: all 4 daemon targets up:", ", ".join(sorted(health)))

# 2. The key series exist (pool, backup, sentinel, health).
for q in ["pgbouncer_up", "pgbouncer_pools_client_active_connections",
          "backup_agent_last_success_timestamp_seconds", "backup_agent_build_info",
          "sentinel_watch_sentinels_up", "sentinel_watch_quorum_ok",
          "health_check_state", "health_cycles_total"]:
    deadline = time.time() + 60
    while True:
        res = json.loads(get(PROM + "/api/v1/query?query=" + urllib.parse.quote(q)))["data"]["result"]
        if res:
            break
        if time.time() > deadline:
            fail("no series for %s" % q)
        time.sleep(1)
print("prometheus: key series present")

# 2b. Every daemon exports the standard process metrics (one series per job).
for q in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
          "process_max_fds", "process_start_time_seconds", "process_virtual_memory_bytes"]:
    deadline = time.time() + 60
    while True:
        res = json.loads(get(PROM + "/api/v1/query?query=" + urllib.parse.quote(q)))["data"]["result"]
        jobs = {r["metric"].get("job") for r in res}
        if len(jobs) == 4:
            break
        if time.time() > deadline:
            fail("%s from %d of 4 daemons: %s" % (q, len(jobs), sorted(j for j in jobs if j)))
        time.sleep(1)
print("prometheus: process_* metrics from all 4 daemons")

# 3. Every metric name the dashboard queries is exported by a daemon.
exported = set()
for d in DAEMONS:
    for line in get("http://%s/metrics" % d).splitlines():
        if line.startswith("# TYPE "):
            exported.add(line.split()[2])
        elif line and not line.startswith("#"):
            exported.add(re.split(r"[{ ]", line, 1)[0])
def known(name):
    if name in exported:
        return True
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in exported:
            return True
    return False
promql_words = {"sum", "by", "without", "rate", "increase", "max", "min", "avg", "count", "time",
                "histogram_quantile", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "le", "offset", "bool", "topk", "bottomk", "abs", "absent", "irate", "delta"}
dash = json.load(open(DASHBOARD))
names = set()
def walk(panels):
    for p in panels:
        for t in p.get("targets", []):
            expr = re.sub(r'\{[^}]*\}', '', t["expr"])       # drop label matchers
            expr = re.sub(r'\[[^\]]*\]', '', expr)           # drop ranges
            expr = re.sub(r'\b(by|without)\s*\([^)]*\)', '', expr)
            for w in re.findall(r'[a-zA-Z_:][a-zA-Z0-9_:]*', expr):
                if w not in promql_words:
                    names.add(w)
        walk(p.get("panels", []))
walk(dash["panels"])
missing = sorted(n for n in names if not known(n))
if missing:
    fail("dashboard uses metrics no daemon exports: %s" % missing)
print("grafana dashboard: all %d metric names are exported" % len(names))

# 4. The dashboard's data source is a variable, its template variables find values, and no panel
#    mixes units (one unit per panel, and not both seconds and bytes among its metrics).
variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
if variables.get("datasource", {}).get("type") != "datasource":
    fail("the dashboard has no data source variable")
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
for p in panels(dash["panels"]):
    if p.get("type") == "row":
        continue
    dss = [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]
    if any(not ds or ds.get("uid") != "${datasource}" for ds in dss):
        fail("panel %r does not use the ${datasource} variable: %s" % (p["title"], dss))
    if p.get("fieldConfig", {}).get("overrides"):
        fail("panel %r overrides units per series" % p["title"])
    kinds = set()
    for t in p.get("targets", []):
        for w in re.findall(r'[a-z_:]+_(seconds|bytes)\b', re.sub(r'\{[^}]*\}', '', t["expr"])):
            kinds.add(w)
    if len(kinds) > 1:
        fail("panel %r mixes units: %s" % (p["title"], sorted(kinds)))
for name, v in variables.items():
    if v.get("type") != "query":
        continue
    m = re.fullmatch(r'label_values\((\w+),\s*(\w+)\)', v["query"]["query"])
    if not m:
        fail("variable %s: query %r is not label_values(METRIC, LABEL)" % (name, v["query"]["query"]))
    metric, label = m.groups()
    res = json.loads(get(PROM + "/api/v1/query?query=" + urllib.parse.quote(metric)))["data"]["result"]
    values = sorted({r["metric"].get(label) for r in res} - {None})
    if not values:
        fail("variable %s: no %s label on %s" % (name, label, metric))
    uses = [t["expr"] for p in panels(dash["panels"]) for t in p.get("targets", []) if "$" + name in t["expr"]]
    if not uses:
        fail("variable %s is used by no panel" % name)
    print("grafana variable %s: %s (used by %d queries)" % (name, ", ".join(values), len(uses)))
