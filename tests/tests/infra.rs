//! The Kubernetes manifests (`infra/kubernetes/base`) and the images' Dockerfiles: every object
//! is checked against the Kubernetes API types (k8s-openapi: an object that does not survive a
//! round trip through its type has a field Kubernetes does not know), rendered with
//! `kubectl kustomize` where kubectl is installed, and held to the rules of the deployment:
//! non-root, read-only root filesystem, no capabilities, probes, requests and limits, secrets by
//! reference, a PodDisruptionBudget per Deployment, the launcher's RBAC limited to Jobs (and
//! their pods) in its namespace, default-deny network policies, an HPA for transcribers, and a
//! configuration meetbot itself accepts.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn base() -> PathBuf {
    meetbot_testsupport::workspace_root().join("infra/kubernetes/base")
}

/// The first place where `a` (as written) and `b` (after the typed round trip) differ.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    None => return Some(format!("{path}.{k} is not a field of this type")),
                    Some(w) => {
                        if let Some(d) = first_difference(&format!("{path}.{k}"), v, w) {
                            return Some(d);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(&format!("{path}[{i}]"), v, w)),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} is read as {b}")),
    }
}

fn typed<T: DeserializeOwned + serde::Serialize>(doc: &Value, origin: &str) -> T {
    let t: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{origin}: not a valid {}: {e}", doc["kind"]));
    let back = serde_json::to_value(&t).unwrap();
    if let Some(d) = first_difference("", doc, &back) {
        panic!(
            "{origin} ({} {}): {d}",
            doc["kind"], doc["metadata"]["name"]
        );
    }
    t
}

#[derive(Default)]
struct Objects {
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    accounts: Vec<ServiceAccount>,
    config_maps: Vec<ConfigMap>,
    roles: Vec<Role>,
    bindings: Vec<RoleBinding>,
    policies: Vec<NetworkPolicy>,
    pdbs: Vec<PodDisruptionBudget>,
    hpas: Vec<HorizontalPodAutoscaler>,
}

fn load(docs: Vec<(String, Value)>) -> Objects {
    let mut o = Objects::default();
    for (origin, d) in docs {
        match (
            d["apiVersion"].as_str().unwrap_or(""),
            d["kind"].as_str().unwrap_or(""),
        ) {
            ("apps/v1", "Deployment") => o.deployments.push(typed(&d, &origin)),
            ("v1", "Service") => o.services.push(typed(&d, &origin)),
            ("v1", "ServiceAccount") => o.accounts.push(typed(&d, &origin)),
            ("v1", "ConfigMap") => o.config_maps.push(typed(&d, &origin)),
            ("rbac.authorization.k8s.io/v1", "Role") => o.roles.push(typed(&d, &origin)),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => o.bindings.push(typed(&d, &origin)),
            ("networking.k8s.io/v1", "NetworkPolicy") => o.policies.push(typed(&d, &origin)),
            ("policy/v1", "PodDisruptionBudget") => o.pdbs.push(typed(&d, &origin)),
            ("autoscaling/v2", "HorizontalPodAutoscaler") => o.hpas.push(typed(&d, &origin)),
            (v, k) => panic!("{origin}: unexpected object {v} {k}"),
        }
    }
    o
}

fn yaml_docs(text: &str, origin: &str) -> Vec<(String, Value)> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| {
            let v: Value = serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{origin}: not YAML: {e}"));
            (origin.to_string(), v)
        })
        .filter(|(_, v)| !v.is_null())
        .collect()
}

/// The files the kustomization lists, each document with its file name.
fn base_documents() -> (Value, Vec<(String, Value)>) {
    let k: Value =
        serde_yaml::from_str(&std::fs::read_to_string(base().join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut docs = Vec::new();
    for r in k["resources"].as_array().unwrap() {
        let f = r.as_str().unwrap();
        docs.extend(yaml_docs(
            &std::fs::read_to_string(base().join(f)).unwrap(),
            f,
        ));
    }
    (k, docs)
}

fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn check(o: &Objects, images: &[String]) {
    let components = [
        "api",
        "calendar-sync",
        "scheduler",
        "launcher",
        "transcriber",
        "delivery",
    ];
    let names: Vec<String> = o
        .deployments
        .iter()
        .map(|d| d.metadata.name.clone().unwrap())
        .collect();
    for c in components {
        assert!(
            names.contains(&format!("meetbot-{c}")),
            "no Deployment for {c}: {names:?}"
        );
    }
    for d in &o.deployments {
        let name = d.metadata.name.clone().unwrap();
        let spec = d.spec.as_ref().unwrap();
        let pod = spec.template.spec.as_ref().unwrap();
        let labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        let selector = spec.selector.match_labels.clone().unwrap();
        assert!(
            labels_match(&selector, &labels),
            "{name}: selector does not select its pods"
        );
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true), "{name}: runAsNonRoot");
        assert!(psc.run_as_user.unwrap() > 0, "{name}: a non-root uid");
        let sa = pod.service_account_name.clone().unwrap();
        assert!(
            o.accounts
                .iter()
                .any(|a| a.metadata.name.as_deref() == Some(&sa)),
            "{name}: no ServiceAccount {sa}"
        );
        // Only the launcher gets an API token.
        assert_eq!(
            pod.automount_service_account_token,
            Some(name == "meetbot-launcher"),
            "{name}"
        );
        let all = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten());
        for c in all {
            let what = format!("{name}/{}", c.name);
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(
                sc.read_only_root_filesystem,
                Some(true),
                "{what}: read-only root"
            );
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
                &vec!["ALL".to_string()],
                "{what}"
            );
            let r = c.resources.as_ref().unwrap();
            for q in ["cpu", "memory"] {
                assert!(
                    r.requests.as_ref().unwrap().contains_key(q),
                    "{what}: {q} request"
                );
                assert!(
                    r.limits.as_ref().unwrap().contains_key(q),
                    "{what}: {q} limit"
                );
            }
            let image = c.image.clone().unwrap();
            assert!(
                images.contains(&image),
                "{what}: image {image} is not one of {images:?}"
            );
            assert!(!image.ends_with(":latest"), "{what}: pinned image");
            // Secrets only by reference: inline values are never credentials.
            for e in c.env.iter().flatten() {
                let secretish = ["SECRET", "TOKEN", "PASSWORD", "KEY", "URI", "URL"]
                    .iter()
                    .any(|s| e.name.contains(s));
                assert!(
                    !(secretish && e.value.is_some()),
                    "{what}: {} is set inline",
                    e.name
                );
            }
            assert!(
                c.env_from.iter().flatten().any(|f| f.secret_ref.is_some()),
                "{what}: secrets by envFrom"
            );
        }
        let main = &pod.containers[0];
        assert!(
            main.readiness_probe.is_some() && main.liveness_probe.is_some(),
            "{name}: probes"
        );
        // Writable space is memory only.
        let tmp = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "tmp")
            .unwrap();
        assert_eq!(
            tmp.empty_dir.as_ref().unwrap().medium.as_deref(),
            Some("Memory"),
            "{name}: /tmp in memory"
        );
        let pdb = o.pdbs.iter().find(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| s.match_labels.as_ref())
                .is_some_and(|m| labels_match(m, &labels))
        });
        assert!(pdb.is_some(), "{name}: no PodDisruptionBudget");
    }
    for s in &o.services {
        let sel = s.spec.as_ref().unwrap().selector.clone().unwrap();
        assert!(
            o.deployments.iter().any(|d| labels_match(
                &sel,
                d.spec
                    .as_ref()
                    .unwrap()
                    .template
                    .metadata
                    .as_ref()
                    .unwrap()
                    .labels
                    .as_ref()
                    .unwrap()
            )),
            "Service {:?} selects no Deployment",
            s.metadata.name
        );
    }
    // The launcher: a namespaced Role over Jobs (and reading their pods), bound to its account.
    let role = o
        .roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("meetbot-launcher"))
        .unwrap();
    for rule in role.rules.as_ref().unwrap() {
        let groups = rule.api_groups.clone().unwrap();
        let resources = rule.resources.clone().unwrap();
        let ok = (groups == ["batch"] && resources == ["jobs"])
            || (groups == [""]
                && resources == ["pods"]
                && rule.verbs.iter().all(|v| v == "get" || v == "list"));
        assert!(
            ok,
            "the launcher may touch only jobs (and read pods): {rule:?}"
        );
        assert!(!rule.verbs.iter().any(|v| v == "*"));
    }
    let binding = o
        .bindings
        .iter()
        .find(|b| b.role_ref.name == "meetbot-launcher")
        .unwrap();
    assert_eq!(binding.role_ref.kind, "Role", "not cluster-wide");
    assert_eq!(
        binding.subjects.as_ref().unwrap()[0].name,
        "meetbot-launcher"
    );
    // Default deny, in and out.
    assert!(
        o.policies.iter().any(|p| {
            let s = p.spec.as_ref().unwrap();
            s.ingress.is_none()
                && s.egress.is_none()
                && s.policy_types.as_ref().is_some_and(|t| t.len() == 2)
        }),
        "no default-deny NetworkPolicy"
    );
    // Transcribers scale.
    let hpa = o
        .hpas
        .iter()
        .find(|h| h.spec.as_ref().unwrap().scale_target_ref.name == "meetbot-transcriber");
    assert!(hpa.is_some_and(|h| h.spec.as_ref().unwrap().max_replicas
        > h.spec.as_ref().unwrap().min_replicas.unwrap_or(1)));
    // The configuration is one meetbot accepts (every field validated as at start).
    let cm = o
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("meetbot-config"))
        .unwrap();
    let toml = &cm.data.as_ref().unwrap()["meetbot.toml"];
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("meetbot.toml");
    std::fs::write(&f, toml).unwrap();
    // With what the Secret meetbot-secrets provides (placeholders here).
    let secret_env = [
        (
            "MEETBOT_STORE__MONGODB_URI",
            "mongodb://user:pass@mongodb:27017",
        ),
        (
            "MEETBOT_QUEUE__AMQP_URL",
            "amqp://user:pass@rabbitmq:5672/%2f",
        ),
        (
            "MEETBOT_BOT__AUDIO_TOKEN_SECRET",
            "placeholder-audio-secret-0123456789",
        ),
        (
            "MEETBOT_TRANSCRIBER__AUDIO_TOKEN_SECRET",
            "placeholder-audio-secret-0123456789",
        ),
    ];
    let cfg = meetbot_core::config::Config::load_with_env(Some(&f), &secret_env)
        .unwrap_or_else(|e| panic!("meetbot.toml: {e}"));
    assert_eq!(
        cfg.launcher.kubernetes.service_account.as_deref(),
        Some("meetbot-bot")
    );
    assert!(
        o.accounts
            .iter()
            .any(|a| a.metadata.name.as_deref() == Some("meetbot-bot"))
    );
}

#[test]
fn the_kubernetes_base_is_valid_against_the_api_types_and_follows_the_deployment_rules() {
    let (k, docs) = base_documents();
    assert!(docs.len() >= 25, "{} objects", docs.len());
    let images: Vec<String> = k["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    check(&load(docs), &images);
}

/// Whether `selector` (a NetworkPolicy's pod selector) selects a pod labelled `labels`.
fn selects(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(|m| labels_match(m, labels))
        && selector.match_expressions.iter().flatten().all(|e| {
            let has = labels.get(&e.key);
            let vals = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => has.is_some_and(|v| vals.contains(v)),
                "NotIn" => has.is_none_or(|v| !vals.contains(v)),
                "Exists" => has.is_some(),
                "DoesNotExist" => has.is_none(),
                o => panic!("unknown selector operator {o}"),
            }
        })
}

/// The services that fetch URLs tenants supply (ICS feeds, webhooks) can reach no private,
/// link-local (cloud metadata) or loopback address outside the cluster's own pods: every
/// egress rule that selects them either names pods (and then only DNS, the store and
/// RabbitMQ ports) or an ipBlock whose exceptions hold those addresses. Pure checks of the
/// manifests: nothing is connected.
#[test]
fn services_that_fetch_tenant_urls_cannot_reach_the_metadata_address_or_private_ranges() {
    let (_, docs) = base_documents();
    let o = load(docs);
    let probes: Vec<std::net::IpAddr> = [
        "169.254.169.254",
        "10.0.0.5",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.1.1",
        "fd00::1",
        "fe80::1",
        "::ffff:10.0.0.5",
        "::1",
        // Other clouds' metadata addresses, and IPv4 reached through NAT64 and 6to4.
        "100.100.100.200",
        "192.0.0.192",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::a00:5",
        "2002:a9fe:a9fe::1",
        "2002:a00:5::1",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let in_cluster_ports = [53, 27017, 5671, 5672];
    for component in ["api", "calendar-sync", "delivery", "transcriber"] {
        let d = o
            .deployments
            .iter()
            .find(|d| {
                d.spec
                    .as_ref()
                    .unwrap()
                    .template
                    .metadata
                    .as_ref()
                    .unwrap()
                    .labels
                    .as_ref()
                    .unwrap()["app.kubernetes.io/component"]
                    == component
            })
            .unwrap_or_else(|| panic!("no {component} Deployment"));
        let labels = d
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        let mut rules = 0;
        for p in &o.policies {
            let s = p.spec.as_ref().unwrap();
            if !selects(&s.pod_selector.clone().unwrap_or_default(), &labels)
                || !s.policy_types.iter().flatten().any(|t| t == "Egress")
            {
                continue;
            }
            let name = p.metadata.name.clone().unwrap();
            for rule in s.egress.iter().flatten() {
                rules += 1;
                let peers = rule.to.clone().unwrap_or_default();
                assert!(
                    !peers.is_empty(),
                    "{name}: an egress rule of {component} allows every destination"
                );
                for peer in peers {
                    match &peer.ip_block {
                        Some(b) => {
                            let cidr: ipnet::IpNet = b.cidr.parse().unwrap();
                            let except: Vec<ipnet::IpNet> = b
                                .except
                                .iter()
                                .flatten()
                                .map(|e| e.parse().unwrap())
                                .collect();
                            for a in &probes {
                                assert!(
                                    !cidr.contains(a) || except.iter().any(|e| e.contains(a)),
                                    "{name}: {component} can reach {a} ({})",
                                    b.cidr
                                );
                            }
                        }
                        None => {
                            // Pods (any namespace): only name resolution, the store, RabbitMQ.
                            let ports = rule.ports.clone().unwrap_or_default();
                            assert!(!ports.is_empty(), "{name}: pods on any port");
                            for port in ports {
                                let n = match port.port {
                                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => n,
                                    other => panic!("{name}: port {other:?}"),
                                };
                                assert!(
                                    in_cluster_ports.contains(&n) && port.end_port.is_none(),
                                    "{name}: {component} reaches pods on port {n}"
                                );
                            }
                        }
                    }
                }
            }
        }
        assert!(rules >= 3, "{component}: DNS, the cluster and the outside");
    }
}

#[test]
fn the_base_rendered_by_kustomize_is_valid_too_where_kubectl_is_installed() {
    let Ok(out) = std::process::Command::new("kubectl")
        .args(["kustomize"])
        .arg(base())
        .output()
    else {
        eprintln!("kubectl is not installed: the files themselves are checked by the test above");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    let docs = yaml_docs(&rendered, "kubectl kustomize");
    let o = load(docs);
    let images = vec!["registry.example.com/meetbot:0.1.0".to_string()];
    check(&o, &images);
    assert!(rendered.contains("app.kubernetes.io/part-of: meetbot"));
}

fn dockerfile(name: &str) -> String {
    std::fs::read_to_string(
        meetbot_testsupport::workspace_root()
            .join("infra/docker")
            .join(name),
    )
    .unwrap()
}

#[test]
fn images_are_multi_stage_minimal_and_run_as_a_non_root_user() {
    for (name, base) in [
        (
            "meetbot.Dockerfile",
            "gcr.io/distroless/cc-debian12:nonroot",
        ),
        ("bot.Dockerfile", "debian:bookworm-slim"),
    ] {
        let d = dockerfile(name);
        let froms: Vec<&str> = d.lines().filter(|l| l.starts_with("FROM ")).collect();
        assert!(
            froms.len() >= 2 && froms[0].ends_with(" AS build"),
            "{name}: multi-stage"
        );
        assert_eq!(
            froms.last().unwrap().trim_start_matches("FROM ").trim(),
            base,
            "{name}: final base"
        );
        let user = d.lines().rev().find(|l| l.starts_with("USER ")).unwrap();
        let uid: u32 = user[5..].split(':').next().unwrap().parse().unwrap();
        assert!(uid >= 1000, "{name}: non-root user");
        assert!(
            d.contains("--locked"),
            "{name}: the lockfile decides dependencies"
        );
        assert!(!d.contains(":latest"));
    }
}

#[test]
fn a_bot_pod_keeps_chromiums_sandbox_and_its_config_map_holds_no_credentials() {
    let (_, docs) = base_documents();
    let o = load(docs);
    let data = |name: &str| {
        o.config_maps
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .and_then(|c| c.data.clone())
            .unwrap_or_else(|| panic!("ConfigMap {name}"))
    };
    // What bots get in plain (the ConfigMap meetbot-bot-env): no credential of any kind.
    for (k, v) in data("meetbot-bot-env") {
        let key = k.to_ascii_uppercase();
        for word in [
            "SECRET", "PASSWORD", "TOKEN", "KEY", "URI", "AMQP", "MONGODB",
        ] {
            assert!(!key.contains(word), "{k} in the bots' plain environment");
        }
        assert!(!v.contains('@'), "{k}: a URL with credentials");
    }
    // The shared configuration leaves Chromium's sandbox on.
    let toml = &data("meetbot-config")["meetbot.toml"];
    assert!(
        !toml.contains("no_sandbox"),
        "the base turns the sandbox off"
    );
    let d = dockerfile("bot.Dockerfile");
    assert!(!d.contains("NO_SANDBOX") && !d.contains("no-sandbox"));
    // The bot image runs as the non-root user Chromium's sandbox needs.
    assert!(d.lines().any(|l| l.trim() == "USER 10001:10001"));
}
