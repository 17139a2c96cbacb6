#!/usr/bin/env python3
"""End-to-end proof against a real Prometheus server (run by .ci/run).

Starts the exporter in demo mode and a Prometheus server on 127.0.0.1 that
scrapes it with the shipped rules loaded, then runs every PromQL expression of
every dashboard panel and every rule through Prometheus's HTTP API:

- any query error fails the test;
- every dashboard expression and every recording rule must return data. An
  expression that looks back with `offset` (last week, the day before) cannot
  have data on a server minutes old, so it must evaluate without error and the
  same expression without its offset must return data;
- alerting rules must evaluate without error (an alert that does not fire has
  an empty result by design), and Prometheus must report every rule healthy.

It also runs `promtool check metrics` on the live /metrics.

Usage: tests/e2e/prometheus_e2e.py [path/to/respan-exporter]
Needs: prometheus and promtool on PATH (Debian package `prometheus`).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, "dashboards", "respan-customers.json")
RULES = os.path.join(ROOT, "dashboards", "prometheus", "rules.yml")
DEADLINE_SECONDS = 180

# Grafana's variables, as "All" selects them.
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$job": ".*",
    "$instance": ".*",
    "$environment": ".*",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def query(base, expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = get(url)
    except urllib.error.HTTPError as e:
        return "error", e.read().decode()
    data = json.loads(body)
    if data.get("status") != "success":
        return "error", body
    return "ok", data["data"]["result"]


def wait_for(what, check, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"FAIL: {what} not within {seconds}s")


def dashboard_expressions():
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            out.append((f'panel "{panel["title"]}" {target["refId"]}', expr))
    return out


def without_offset(expr):
    return re.sub(r"\s+offset\s+\w+", "", expr)


def main():
    exporter_bin = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "respan-exporter")
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            sys.exit(f"FAIL: {tool} is not installed")
    workdir = tempfile.mkdtemp(prefix="respan-e2e-")
    exporter_port, prometheus_port = free_port(), free_port()
    exporter_url = f"http://127.0.0.1:{exporter_port}"
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"

    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write(f"""global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: respan
    static_configs:
      - targets: ["127.0.0.1:{exporter_port}"]
""")
    subprocess.run(["promtool", "check", "config", config], check=True)

    procs = []
    logs = {}
    try:
        for name, cmd in (
            ("exporter", [exporter_bin, "--demo", "--web.listen-address", f"127.0.0.1:{exporter_port}",
                          "--respan.poll-interval", "5s"]),
            ("prometheus", ["prometheus", f"--config.file={config}",
                            f"--storage.tsdb.path={os.path.join(workdir, 'data')}",
                            f"--web.listen-address=127.0.0.1:{prometheus_port}"]),
        ):
            logs[name] = open(os.path.join(workdir, f"{name}.log"), "w+")
            procs.append(subprocess.Popen(cmd, stdout=logs[name], stderr=subprocess.STDOUT))

        wait_for("exporter ready", lambda: get(exporter_url + "/readyz") == "ready\n", 60)
        wait_for("prometheus ready", lambda: "Ready" in get(prometheus_url + "/-/ready"), 60)

        metrics = get(exporter_url + "/metrics")
        subprocess.run(["promtool", "check", "metrics"], input=metrics.encode(), check=True)
        print("ok: promtool check metrics on the live /metrics")

        rules = json.loads(get(prometheus_url + "/api/v1/rules"))["data"]["groups"]
        recording = [(f'recording rule {r["name"]}', r["query"]) for g in rules for r in g["rules"] if r["type"] == "recording"]
        alerting = [(f'alert {r["name"]}', r["query"]) for g in rules for r in g["rules"] if r["type"] == "alerting"]
        if not recording or not alerting:
            sys.exit("FAIL: Prometheus loaded no rules")
        must_have_data = dashboard_expressions() + recording

        started = time.time()
        pending = list(must_have_data)
        while True:
            still = []
            for name, expr in pending:
                for e in {expr, without_offset(expr)}:
                    status, result = query(prometheus_url, e)
                    if status == "error":
                        sys.exit(f"FAIL: {name}: {e}\n  {result}")
                status, result = query(prometheus_url, without_offset(expr))
                if not result:
                    still.append((name, expr))
            pending = still
            if not pending:
                break
            if time.time() - started > DEADLINE_SECONDS:
                for name, expr in pending:
                    print(f"FAIL: no data for {name}: {expr}")
                sys.exit(1)
            time.sleep(2)
        print(f"ok: {len(must_have_data)} dashboard and recording-rule expressions return data "
              f"(after {time.time() - started:.0f}s)")

        for name, expr in alerting:
            status, result = query(prometheus_url, expr)
            if status == "error":
                sys.exit(f"FAIL: {name}: {result}")
        print(f"ok: {len(alerting)} alert expressions evaluate")

        rules = json.loads(get(prometheus_url + "/api/v1/rules"))["data"]["groups"]
        unhealthy = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r.get("health") != "ok"]
        if unhealthy:
            sys.exit(f"FAIL: unhealthy rules: {unhealthy}")
        print("ok: every rule is healthy")
        print("e2e: 1 passed, 0 failed")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("RESPAN_E2E_KEEP"):
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
