#!/usr/bin/env python3
"""The comparison for benches/scale.rs: a straightforward Python exporter built
on prometheus_client and requests, doing the same full crawl as respan-exporter
(every page of List customers at page_size=1000, JSON decoded per page, totals,
request-weighted latency, activity windows, top-N gauges, one rendering of the
exposition).

Prints one JSON line: CPU seconds of the crawl (user + system, this process),
wall seconds, customers, pages.

Usage: python_exporter.py BASE_URL API_KEY ENVIRONMENT [TOP_N]
Needs: pip install prometheus_client requests
"""

import heapq
import json
import resource
import sys
import time
from datetime import datetime

import requests
from prometheus_client import CollectorRegistry, Gauge, generate_latest

WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def number(v):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f >= 0 and f == f and f != float("inf") else None


def timestamp(v):
    if not v:
        return None
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    base, key, environment = sys.argv[1], sys.argv[2], sys.argv[3]
    top_n = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    registry = CollectorRegistry()
    labels = ["environment"]
    g = {name: Gauge(name, name, labels, registry=registry) for name in (
        "respan_customers", "respan_cost_usd", "respan_tokens", "respan_requests",
        "respan_average_latency_seconds", "respan_average_ttft_seconds")}
    active = Gauge("respan_active_customers", "a", ["environment", "window"], registry=registry)
    new = Gauge("respan_new_customers", "n", ["environment", "window"], registry=registry)
    top = {name: Gauge(name, name, ["environment", "customer_identifier"], registry=registry) for name in (
        "respan_customer_cost_usd", "respan_customer_tokens", "respan_customer_requests")}

    started_cpu, started_wall = cpu(), time.time()
    customers = {}
    page = 1
    while True:
        r = session.get(f"{base}/api/users/list/", params={
            "page": page, "page_size": 1000, "sort_by": "first_seen", "environment": environment}, timeout=30)
        r.raise_for_status()
        body = r.json()
        for c in body["results"]:
            customers[c.get("id") or c.get("customer_identifier")] = {
                "identifier": c.get("customer_identifier"),
                "cost": number(c.get("total_cost")) or number(c.get("cost")) or 0.0,
                "tokens": number(c.get("total_tokens")) or number(c.get("tokens")) or 0.0,
                "requests": number(c.get("number_of_requests")) or number(c.get("total_requests")) or 0.0,
                "latency": number(c.get("average_latency")),
                "ttft": number(c.get("average_ttft")),
                "first_seen": timestamp(c.get("first_seen")),
                "last_active": timestamp(c.get("last_active_timeframe")),
            }
        if not body.get("next"):
            break
        page += 1

    now = time.time()
    cost = tokens = reqs = lat_w = lat_n = ttft_w = ttft_n = 0.0
    act = {w: 0 for w in WINDOWS}
    nw = {w: 0 for w in WINDOWS}
    for c in customers.values():
        cost += c["cost"]
        tokens += c["tokens"]
        reqs += c["requests"]
        if c["latency"] is not None and c["requests"] > 0:
            lat_w += c["latency"] * c["requests"]
            lat_n += c["requests"]
        if c["ttft"] is not None and c["requests"] > 0:
            ttft_w += c["ttft"] * c["requests"]
            ttft_n += c["requests"]
        for w, length in WINDOWS.items():
            if c["last_active"] is not None and c["last_active"] >= now - length:
                act[w] += 1
            if c["first_seen"] is not None and c["first_seen"] >= now - length:
                nw[w] += 1
    g["respan_customers"].labels(environment).set(len(customers))
    g["respan_cost_usd"].labels(environment).set(cost)
    g["respan_tokens"].labels(environment).set(tokens)
    g["respan_requests"].labels(environment).set(reqs)
    if lat_n:
        g["respan_average_latency_seconds"].labels(environment).set(lat_w / lat_n)
    if ttft_n:
        g["respan_average_ttft_seconds"].labels(environment).set(ttft_w / ttft_n)
    for w in WINDOWS:
        active.labels(environment, w).set(act[w])
        new.labels(environment, w).set(nw[w])
    best = heapq.nsmallest(top_n, (c for c in customers.values() if c["identifier"] is not None),
                           key=lambda c: (-c["cost"], c["identifier"]))
    for c in best:
        top["respan_customer_cost_usd"].labels(environment, c["identifier"]).set(c["cost"])
        top["respan_customer_tokens"].labels(environment, c["identifier"]).set(c["tokens"])
        top["respan_customer_requests"].labels(environment, c["identifier"]).set(c["requests"])
    exposition = generate_latest(registry)

    print(json.dumps({
        "cpu_seconds": cpu() - started_cpu,
        "wall_seconds": time.time() - started_wall,
        "customers": len(customers),
        "pages": page,
        "exposition_bytes": len(exposition),
    }))


if __name__ == "__main__":
    main()
