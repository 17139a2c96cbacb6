//! The shipped dashboard, rules and deployment files: well-formed, and one
//! rules file everywhere.

use std::path::{Path, PathBuf};

use serde_norway::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn path(relative: &str) -> PathBuf {
    Path::new(ROOT).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The Kubernetes PrometheusRule, generated from the one rules file.
fn prometheus_rule() -> String {
    let rules: Value =
        serde_norway::from_str(&read("dashboards/prometheus/rules.yml")).expect("rules parse");
    let document: Value = serde_norway::from_str(
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: respan-exporter\n  labels:\n    app.kubernetes.io/name: respan-exporter\nspec: {}\n",
    )
    .expect("template parses");
    let mut document = document;
    if let Value::Mapping(spec) = &mut document["spec"] {
        spec.insert("groups".into(), rules["groups"].clone());
    }
    format!(
        "# Generated from dashboards/prometheus/rules.yml by the test\n\
         # prometheus_rule_is_generated_from_the_rules_file; do not edit. To regenerate:\n\
         #   RESPAN_UPDATE_DEPLOY=1 cargo test --test api deploy\n{}",
        serde_norway::to_string(&document).expect("serializes")
    )
}

#[test]
fn prometheus_rule_is_generated_from_the_rules_file() {
    let expected = prometheus_rule();
    let file = "deploy/kubernetes/prometheusrule.yaml";
    if std::env::var_os("RESPAN_UPDATE_DEPLOY").is_some() {
        std::fs::write(path(file), &expected).expect("write");
    }
    assert!(
        read(file) == expected,
        "{file} differs from dashboards/prometheus/rules.yml; run RESPAN_UPDATE_DEPLOY=1 cargo test --test api deploy"
    );
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("dir") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn every_yaml_file_is_well_formed_and_rules_live_in_one_place() {
    let mut files = Vec::new();
    yaml_files(&path("deploy"), &mut files);
    yaml_files(&path("dashboards"), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    let mut rule_files = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let doc: Value =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let relative = file
            .strip_prefix(ROOT)
            .expect("under root")
            .display()
            .to_string();
        if relative.starts_with("deploy/kubernetes/") && !relative.ends_with("kustomization.yaml") {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "{relative}"
            );
        }
        if text.contains("alert: RespanSpendSpike") {
            rule_files.push(relative);
        }
    }
    rule_files.sort();
    assert_eq!(
        rule_files,
        [
            "dashboards/prometheus/rules.yml",
            "deploy/kubernetes/prometheusrule.yaml"
        ],
        "the alerting rules must live in one file (and the PrometheusRule generated from it)"
    );
    let compose = read("deploy/docker-compose.yml");
    assert!(compose.contains("../dashboards/prometheus/rules.yml:"));
    assert!(compose.contains("../dashboards:/var/lib/grafana/dashboards"));
    let kustomization = read("deploy/kubernetes/kustomization.yaml");
    for resource in [
        "deployment.yaml",
        "service.yaml",
        "servicemonitor.yaml",
        "prometheusrule.yaml",
        "secret.yaml",
    ] {
        assert!(kustomization.contains(resource), "{resource}");
    }
}

#[test]
fn deployment_probes_health_and_readiness_and_reads_the_key_from_a_file() {
    let d: Value =
        serde_norway::from_str(&read("deploy/kubernetes/deployment.yaml")).expect("parses");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(10077));
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--respan.api-key-file=/etc/respan/api-key"),
        "{args:?}"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
}

#[test]
fn dashboard_is_importable_and_has_no_fixed_datasource() {
    let d: serde_json::Value =
        serde_json::from_str(&read("dashboards/respan-customers.json")).expect("JSON");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    let variables: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance", "environment"]);
    let mut queries = 0;
    for panel in d["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            assert!(
                !expr.contains("rate(respan_cost") && !expr.contains("increase(respan_cost"),
                "{expr}"
            );
            if expr.contains("respan_") && !expr.contains("_total") {
                assert!(expr.contains("environment=~\"$environment\""), "{expr}");
            }
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries}");
}

#[test]
fn dockerfile_builds_from_what_the_manifest_needs_and_runs_unprivileged() {
    let dockerfile = read("Dockerfile");
    let manifest = read("Cargo.toml");
    // Cargo refuses a manifest whose declared targets are missing, so every
    // declared target's directory must be copied before the first cargo call.
    let first_cargo = dockerfile.find("cargo ").expect("a cargo step");
    for (declaration, directory) in [("[[bench]]", "COPY benches"), ("[lib]", "src/lib.rs")] {
        if manifest.contains(declaration) {
            let at = dockerfile.find(directory).unwrap_or(usize::MAX);
            assert!(
                at < first_cargo,
                "{directory} must come before the first cargo step"
            );
        }
    }
    let runtime = dockerfile.rsplit("FROM ").next().expect("a final stage");
    assert!(runtime.starts_with("scratch"), "{runtime}");
    assert!(runtime.contains("ca-certificates.crt"));
    assert!(runtime.contains("USER 65532:65532"));
    assert!(runtime.contains("EXPOSE 10077"));
    assert!(read(".dockerignore").lines().any(|l| l.trim() == "target"));
}
