//! The Kubernetes manifests (`infra/kubernetes/base`) and the images' Dockerfiles: every object
//! is checked against the Kubernetes API types (k8s-openapi: an object that does not survive a
//! round trip through its type has a field Kubernetes does not know), rendered with
//! `kubectl kustomize` where kubectl is installed, and held to the rules of the deployment:
//! non-root, read-only root filesystem, no capabilities, probes, requests and limits, secrets by
//! reference, a PodDisruptionBudget per Deployment, the launcher's RBAC limited to Jobs (their
//! pods, and writing the bots' ticket Secrets) in its namespace, default-deny network policies,
//! an HPA for transcribers, and a configuration meetbot itself accepts. Bots get no Secret from
//! the configuration and reach only the transcriber and the launcher's control port in the
//! cluster. The namespace enforces Pod Security `restricted`, which every pod of the base and
//! the bot Job meet. The bots' seccomp profile (`infra/kubernetes/seccomp`) is held to what
//! Chromium's sandbox and the bot need (run by the kernel in a child process: no netfilter
//! table, no raw socket from a user namespace), and the node installer
//! (`infra/kubernetes/node-seccomp`) to shipping that very file where the Job template names
//! it (decision 0034).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
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
    namespaces: Vec<Namespace>,
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
            ("v1", "Namespace") => o.namespaces.push(typed(&d, &origin)),
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

/// The shared configuration (ConfigMap meetbot-config), loaded and validated as meetbot does at
/// start, with placeholders for what the Secret meetbot-secrets provides.
fn base_config(o: &Objects) -> meetbot_core::config::Config {
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
    meetbot_core::config::Config::load_with_env(Some(&f), &secret_env)
        .unwrap_or_else(|e| panic!("meetbot.toml: {e}"))
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
    // The launcher: a namespaced Role over Jobs (reading their pods, and creating the bots'
    // ticket Secrets without reading, changing or deleting any Secret), bound to its account.
    let role = o
        .roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("meetbot-launcher"))
        .unwrap();
    for rule in role.rules.as_ref().unwrap() {
        let groups = rule.api_groups.clone().unwrap();
        let resources = rule.resources.clone().unwrap();
        let only = |allowed: &[&str]| rule.verbs.iter().all(|v| allowed.contains(&v.as_str()));
        let ok = (groups == ["batch"] && resources == ["jobs"])
            || (groups == [""] && resources == ["pods"] && only(&["get", "list"]))
            || (groups == [""] && resources == ["secrets"] && only(&["create"]));
        assert!(
            ok,
            "the launcher may touch only jobs (read pods, create ticket Secrets): {rule:?}"
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
    let cfg = base_config(o);
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

/// Addresses no meetbot pod may reach through an ipBlock: private, shared-NAT, loopback,
/// link-local and the cloud metadata addresses, also as IPv4-mapped, NAT64 and 6to4 forms.
fn private_and_metadata_addresses() -> Vec<std::net::IpAddr> {
    [
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
    .collect()
}

/// Panics unless every address of `probes` that `b`'s CIDR holds is one of its exceptions.
fn assert_ip_block_excludes(
    b: &k8s_openapi::api::networking::v1::IPBlock,
    probes: &[std::net::IpAddr],
    what: &str,
) {
    let cidr: ipnet::IpNet = b.cidr.parse().unwrap();
    let except: Vec<ipnet::IpNet> = b
        .except
        .iter()
        .flatten()
        .map(|e| e.parse().unwrap())
        .collect();
    for a in probes {
        assert!(
            !cidr.contains(a) || except.iter().any(|e| e.contains(a)),
            "{what} can reach {a} ({})",
            b.cidr
        );
    }
}

/// The labels of a Deployment's pods.
fn pod_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap()
}

/// The Deployment of a component (`app.kubernetes.io/component`).
fn deployment<'a>(o: &'a Objects, component: &str) -> &'a Deployment {
    o.deployments
        .iter()
        .find(|d| {
            pod_labels(d)
                .get("app.kubernetes.io/component")
                .map(String::as_str)
                == Some(component)
        })
        .unwrap_or_else(|| panic!("no {component} Deployment"))
}

/// The egress rules of every NetworkPolicy that selects a pod labelled `labels`, each with its
/// policy's name.
fn egress_rules(
    o: &Objects,
    labels: &BTreeMap<String, String>,
) -> Vec<(
    String,
    k8s_openapi::api::networking::v1::NetworkPolicyEgressRule,
)> {
    let mut rules = Vec::new();
    for p in &o.policies {
        let s = p.spec.as_ref().unwrap();
        if !selects(&s.pod_selector.clone().unwrap_or_default(), labels)
            || !s.policy_types.iter().flatten().any(|t| t == "Egress")
        {
            continue;
        }
        let name = p.metadata.name.clone().unwrap();
        rules.extend(s.egress.iter().flatten().map(|r| (name.clone(), r.clone())));
    }
    rules
}

/// The ports a rule opens, each as (protocol, first, last); `None`: every port.
fn opened(
    ports: &Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPort>>,
) -> Option<Vec<(String, i32, i32)>> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ports = ports.as_ref().filter(|p| !p.is_empty())?;
    Some(
        ports
            .iter()
            .map(|p| {
                let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                match p.port {
                    None => (protocol, 1, 65535),
                    Some(IntOrString::Int(n)) => (protocol, n, p.end_port.unwrap_or(n)),
                    Some(IntOrString::String(ref s)) => panic!("named port {s}: give numbers"),
                }
            })
            .collect(),
    )
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
    let probes = private_and_metadata_addresses();
    let in_cluster_ports = [53, 27017, 5671, 5672];
    for component in ["api", "calendar-sync", "delivery", "transcriber"] {
        let labels = pod_labels(deployment(&o, component));
        let rules = egress_rules(&o, &labels);
        for (name, rule) in &rules {
            let peers = rule.to.clone().unwrap_or_default();
            assert!(
                !peers.is_empty(),
                "{name}: an egress rule of {component} allows every destination"
            );
            for peer in peers {
                match &peer.ip_block {
                    Some(b) => {
                        assert_ip_block_excludes(b, &probes, &format!("{name}: {component}"))
                    }
                    None => {
                        // Pods (any namespace): only name resolution, the store, RabbitMQ.
                        let ports = opened(&rule.ports)
                            .unwrap_or_else(|| panic!("{name}: pods on any port"));
                        for (_, first, last) in ports {
                            assert!(
                                first == last && in_cluster_ports.contains(&first),
                                "{name}: {component} reaches pods on port {first}-{last}"
                            );
                        }
                    }
                }
            }
        }
        assert!(
            rules.len() >= 3,
            "{component}: DNS, the cluster and the outside"
        );
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

/// The labels the launcher gives a bot's pod.
fn bot_pod_labels() -> BTreeMap<String, String> {
    use meetbot_bot::kubernetes::{APP, APP_LABEL, JOB_LABEL, MEETING_LABEL, TENANT_LABEL};
    BTreeMap::from([
        (APP_LABEL.to_string(), APP.to_string()),
        (TENANT_LABEL.to_string(), "clinic01".to_string()),
        (MEETING_LABEL.to_string(), "m1".to_string()),
        (JOB_LABEL.to_string(), "j1".to_string()),
    ])
}

fn config_map_data(o: &Objects, name: &str) -> BTreeMap<String, String> {
    o.config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .and_then(|c| c.data.clone())
        .unwrap_or_else(|| panic!("ConfigMap {name}"))
}

/// Bots hold no store, key-vault or queue credential (decision 0034): the configuration names
/// no Secret for bot Jobs, the base defines or mentions none for them, and no egress rule that
/// selects a bot pod opens the store's or RabbitMQ's ports to anything.
#[test]
fn bots_get_no_secret_from_the_configuration_and_no_route_to_the_store_or_rabbitmq() {
    let (_, docs) = base_documents();
    for (origin, d) in &docs {
        assert_ne!(d["kind"], "Secret", "{origin}: the base writes a Secret");
        assert!(
            !d.to_string().contains("meetbot-bot-secrets"),
            "{origin}: still refers to a bot Secret"
        );
    }
    let o = load(docs);
    let cfg = base_config(&o);
    assert!(
        cfg.launcher.kubernetes.env_from_secrets.is_empty(),
        "bot Jobs get Secrets: {:?}",
        cfg.launcher.kubernetes.env_from_secrets
    );
    let template = meetbot_bot::kubernetes::JobTemplate::from_config(&cfg.launcher.kubernetes);
    assert!(template.env_from_secrets.is_empty());
    // What they get instead exists in the base (and holds no credential: the test below).
    assert_eq!(template.env_from_config_maps, ["meetbot-bot-env"]);
    config_map_data(&o, "meetbot-bot-env");

    let rules = egress_rules(&o, &bot_pod_labels());
    assert!(rules.len() >= 3, "DNS, the cluster and the outside");
    for (name, rule) in rules {
        let ports = opened(&rule.ports).unwrap_or_else(|| panic!("{name}: bots on any port"));
        for (protocol, first, last) in ports {
            for store in [27017, 5671, 5672] {
                assert!(
                    !(protocol == "TCP" && first <= store && store <= last),
                    "{name}: bots reach TCP {store} (the store or RabbitMQ)"
                );
            }
        }
    }
}

/// In the cluster, a bot reaches the transcriber's audio port, the launcher's control port and
/// name resolution, nothing else (no other service, no other bot; outside the cluster no
/// private or metadata address); the control port admits bot pods only; and the launcher
/// serves it where the configuration tells bots to report.
#[test]
fn bots_reach_in_the_cluster_only_the_transcribers_audio_and_the_launchers_control_port() {
    let (_, docs) = base_documents();
    let o = load(docs);
    let bot = bot_pod_labels();
    let probes = private_and_metadata_addresses();
    let mut reached = std::collections::BTreeSet::new();
    for (name, rule) in egress_rules(&o, &bot) {
        let peers = rule.to.clone().unwrap_or_default();
        assert!(!peers.is_empty(), "{name}: bots reach every destination");
        let ports = opened(&rule.ports).unwrap_or_else(|| panic!("{name}: bots on any port"));
        for peer in peers {
            if let Some(b) = &peer.ip_block {
                assert_ip_block_excludes(b, &probes, &format!("{name}: a bot"));
                continue;
            }
            if let Some(ns) = &peer.namespace_selector {
                // Name resolution: kube-system, port 53 only.
                assert_eq!(
                    ns.match_labels.clone().unwrap_or_default(),
                    BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_string(),
                        "kube-system".to_string()
                    )]),
                    "{name}: bots reach another namespace"
                );
                assert!(
                    ports
                        .iter()
                        .all(|(_, first, last)| (*first, *last) == (53, 53)),
                    "{name}: bots reach kube-system beyond DNS: {ports:?}"
                );
                reached.insert("dns".to_string());
                continue;
            }
            let selector = peer.pod_selector.clone().unwrap();
            assert!(!selects(&selector, &bot), "{name}: bots reach other bots");
            let targets: Vec<String> = o
                .deployments
                .iter()
                .filter(|d| selects(&selector, &pod_labels(d)))
                .map(|d| pod_labels(d)["app.kubernetes.io/component"].clone())
                .collect();
            let port = match targets.as_slice() {
                [t] if t == "transcriber" => 8091,
                [t] if t == "launcher" => 8093,
                other => panic!("{name}: bots reach {other:?}"),
            };
            assert_eq!(ports, [("TCP".to_string(), port, port)], "{name}");
            reached.insert(targets[0].clone());
        }
    }
    assert_eq!(
        reached.into_iter().collect::<Vec<_>>(),
        ["dns", "launcher", "transcriber"]
    );

    // The control port answers bot pods, and only them.
    let launcher = pod_labels(deployment(&o, "launcher"));
    let mut admitted = false;
    for p in &o.policies {
        let s = p.spec.as_ref().unwrap();
        let name = p.metadata.name.clone().unwrap();
        if !selects(&s.pod_selector.clone().unwrap_or_default(), &launcher)
            || !s.policy_types.iter().flatten().any(|t| t == "Ingress")
        {
            continue;
        }
        for rule in s.ingress.iter().flatten() {
            let opens_control = opened(&rule.ports).is_none_or(|ports| {
                ports
                    .iter()
                    .any(|(pr, first, last)| pr == "TCP" && *first <= 8093 && 8093 <= *last)
            });
            if !opens_control {
                continue;
            }
            let from = rule.from.clone().unwrap_or_default();
            assert!(!from.is_empty(), "{name}: the control port is open to all");
            for peer in from {
                assert!(
                    peer.ip_block.is_none() && peer.namespace_selector.is_none(),
                    "{name}: the control port is open beyond bot pods"
                );
                let selector = peer.pod_selector.unwrap();
                assert!(selects(&selector, &bot), "{name}");
                for d in &o.deployments {
                    assert!(
                        !selects(&selector, &pod_labels(d)),
                        "{name}: {:?} reaches the control port",
                        d.metadata.name
                    );
                }
            }
            admitted = true;
        }
    }
    assert!(
        admitted,
        "no policy lets bots reach the launcher's control port"
    );

    // Where bots are told to report (the URL their tickets carry) is that port: the launcher
    // listens there, its container port `control` is 8093, the Service meetbot-launcher
    // forwards 8093 to it.
    let cfg = base_config(&o);
    assert_eq!(cfg.launcher.control_listen, "0.0.0.0:8093");
    let url = cfg.launcher.control_url.clone().unwrap();
    assert_eq!(url, "https://meetbot-launcher:8093");
    let container = &deployment(&o, "launcher")
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert!(
        container
            .ports
            .iter()
            .flatten()
            .any(|p| p.name.as_deref() == Some("control") && p.container_port == 8093)
    );
    let service = o
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("meetbot-launcher"))
        .expect("Service meetbot-launcher");
    let spec = service.spec.as_ref().unwrap();
    assert!(labels_match(spec.selector.as_ref().unwrap(), &launcher));
    let ports = spec.ports.as_ref().unwrap();
    assert_eq!(
        ports.len(),
        1,
        "the launcher's Service exposes the control port alone"
    );
    assert_eq!(ports[0].port, 8093);
    assert_eq!(
        ports[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("control".into()))
    );
}

fn kubernetes_dir() -> PathBuf {
    meetbot_testsupport::workspace_root().join("infra/kubernetes")
}

/// A seccomp profile in the runtime's (OCI) format, nothing more: a field it does not know is
/// an error here, so a typo cannot quietly drop a rule.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SeccompProfile {
    default_action: String,
    default_errno_ret: Option<u32>,
    architectures: Vec<String>,
    syscalls: Vec<SyscallRule>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SyscallRule {
    comment: String,
    names: Vec<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<ArgRule>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArgRule {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// What a filter does with a call.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    Allow,
    Errno(u32),
}

impl ArgRule {
    fn holds(&self, args: &[u64; 6]) -> bool {
        let a = args[self.index];
        match self.op.as_str() {
            "SCMP_CMP_EQ" => a == self.value,
            "SCMP_CMP_NE" => a != self.value,
            "SCMP_CMP_LT" => a < self.value,
            "SCMP_CMP_LE" => a <= self.value,
            "SCMP_CMP_GT" => a > self.value,
            "SCMP_CMP_GE" => a >= self.value,
            "SCMP_CMP_MASKED_EQ" => a & self.value == self.value_two,
            op => panic!("unknown comparison {op}"),
        }
    }
}

fn verdict(action: &str, errno: Option<u32>) -> Verdict {
    match action {
        "SCMP_ACT_ALLOW" => Verdict::Allow,
        "SCMP_ACT_ERRNO" => Verdict::Errno(errno.expect("SCMP_ACT_ERRNO without its errno")),
        a => panic!("action {a}: only allow and errno are used"),
    }
}

impl SeccompProfile {
    fn load() -> Self {
        let path = kubernetes_dir().join("seccomp/chromium-sandbox.json");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The filter's answer to `name(args)`: the rules naming it (an entry's conditions all hold,
    /// entries are alternatives), else the default.
    fn decide(&self, name: &str, args: [u64; 6]) -> Verdict {
        self.syscalls
            .iter()
            .find(|r| r.names.iter().any(|n| n == name) && r.args.iter().all(|a| a.holds(&args)))
            .map(|r| verdict(&r.action, r.errno_ret))
            .unwrap_or_else(|| verdict(&self.default_action, self.default_errno_ret))
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.syscalls
            .iter()
            .flat_map(|r| r.names.iter().map(String::as_str))
    }
}

/// The bots' seccomp profile refuses what it does not name (EPERM), is written for 64-bit x86
/// and ARM only (32-bit entry points are refused by its architecture check), lets the bot
/// (tokio, glibc, tini) and Chromium run with Chromium's namespace sandbox (clone with new
/// user, PID and network namespaces, unshare, chroot, its own seccomp filters), answers clone3
/// with ENOSYS so glibc falls back to the clone it can check, and refuses the calls that reach
/// the kernel's most dangerous surface: mounts, modules, kexec, BPF, perf, ptrace, other
/// processes' memory, keyrings, io_uring, userfaultfd, clocks, raw I/O, namespaces other than
/// the sandbox's, netlink other than routes, sockets other than Unix, route netlink, TCP and
/// UDP (no raw IP), socket options of other levels, netfilter's table options and per-socket
/// IPsec policies (also with the option number behind high bits of its register).
#[test]
fn the_bot_seccomp_profile_refuses_by_default_and_allows_chromiums_sandbox_and_the_bot_only() {
    let p = SeccompProfile::load();
    assert_eq!(p.default_action, "SCMP_ACT_ERRNO");
    assert_eq!(p.default_errno_ret, Some(libc::EPERM as u32));
    assert_eq!(p.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]);
    for r in &p.syscalls {
        assert!(!r.comment.trim().is_empty(), "{:?}: say why", r.names);
        for n in &r.names {
            assert!(
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{n:?} is not a syscall name"
            );
        }
    }
    // One answer per call (entries are alternatives only among rules of one action), so the
    // runtime's rule order cannot change what the filter does.
    for n in p.names() {
        let actions: std::collections::BTreeSet<(&str, Option<u32>)> = p
            .syscalls
            .iter()
            .filter(|r| r.names.iter().any(|m| m == n))
            .map(|r| (r.action.as_str(), r.errno_ret))
            .collect();
        assert_eq!(actions.len(), 1, "{n}: {actions:?}");
    }
    let call = |name: &str, args: &[u64]| {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        p.decide(name, a)
    };
    let allowed = |name: &str, args: &[u64]| call(name, args) == Verdict::Allow;

    // The bot: a tokio program (epoll, eventfd, threads, TCP/UDP, timers, DNS through glibc)
    // under tini.
    let bot = "read write readv writev openat close close_range fstat newfstatat statx lseek \
         getdents64 faccessat2 readlinkat unlinkat mkdirat renameat2 fcntl ioctl dup3 pipe2 \
         mmap munmap mprotect madvise mremap brk futex epoll_create1 epoll_ctl epoll_wait \
         epoll_pwait eventfd2 poll ppoll getrandom sched_getaffinity sched_yield sigaltstack \
         rt_sigaction rt_sigprocmask rt_sigreturn rt_sigtimedwait set_robust_list \
         set_tid_address rseq prctl prlimit64 clock_gettime clock_nanosleep nanosleep exit \
         exit_group execve wait4 waitid kill tgkill getpid getppid gettid getuid geteuid getgid \
         setsid setpgid uname connect bind listen accept4 sendto recvfrom sendmsg recvmsg \
         sendmmsg recvmmsg setsockopt getsockopt getsockname getpeername shutdown pidfd_open \
         pidfd_send_signal sendfile copy_file_range"
        .split_whitespace();
    // Chromium (browser, zygote, renderers, utility processes; no GPU) and its sandbox.
    let chromium =
        "chroot seccomp capget capset setresuid setresgid getresuid getresgid memfd_create \
         ftruncate fallocate membarrier pkey_alloc pkey_free pkey_mprotect inotify_init1 \
         inotify_add_watch inotify_rm_watch timerfd_create timerfd_settime getpriority \
         setpriority sched_setscheduler sched_getparam sysinfo statfs fstatfs fsync fdatasync \
         flock fchmod utimensat symlinkat vfork fchdir chdir"
            .split_whitespace();
    for n in bot.chain(chromium) {
        assert!(allowed(n, &[]), "{n} is refused");
    }
    let sigchld = libc::SIGCHLD as u64;
    let flags = |f: &[libc::c_int]| f.iter().fold(0u64, |a, b| a | *b as u64);
    // Threads (glibc's fallback from clone3), fork, posix_spawn.
    for f in [
        flags(&[
            libc::CLONE_VM,
            libc::CLONE_FS,
            libc::CLONE_FILES,
            libc::CLONE_SIGHAND,
            libc::CLONE_THREAD,
            libc::CLONE_SYSVSEM,
            libc::CLONE_SETTLS,
            libc::CLONE_PARENT_SETTID,
            libc::CLONE_CHILD_CLEARTID,
        ]),
        flags(&[libc::CLONE_CHILD_SETTID, libc::CLONE_CHILD_CLEARTID]) | sigchld,
        flags(&[libc::CLONE_VM, libc::CLONE_VFORK]) | sigchld,
        // Chromium's sandbox: its probe, its sandboxed children, the chroot helper.
        flags(&[libc::CLONE_NEWUSER]) | sigchld,
        flags(&[libc::CLONE_NEWUSER, libc::CLONE_NEWPID, libc::CLONE_NEWNET]) | sigchld,
        flags(&[libc::CLONE_FS]) | sigchld,
    ] {
        assert!(allowed("clone", &[f]), "clone({f:#x}) is refused");
    }
    for f in [libc::CLONE_NEWUSER, libc::CLONE_NEWNET, libc::CLONE_FS] {
        assert!(
            allowed("unshare", &[f as u64]),
            "unshare({f:#x}) is refused"
        );
    }
    // Namespaces the sandbox does not make: mount, cgroup, UTS, IPC, time.
    for ns in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
    ] {
        let f = flags(&[libc::CLONE_NEWUSER, ns]) | sigchld;
        assert!(!allowed("clone", &[f]), "clone({f:#x}) is allowed");
        assert!(
            !allowed("unshare", &[f & !0xff]),
            "unshare({f:#x}) is allowed"
        );
    }
    assert!(!allowed("unshare", &[libc::CLONE_NEWTIME as u64]));
    assert_eq!(call("clone3", &[]), Verdict::Errno(libc::ENOSYS as u32));

    // Sockets: Unix and IP; netlink for the interface list only.
    let socket = |domain: libc::c_int, kind: libc::c_int, protocol: libc::c_int| {
        allowed("socket", &[domain as u64, kind as u64, protocol as u64])
    };
    assert!(socket(
        libc::AF_UNIX,
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
        0
    ));
    assert!(socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP));
    assert!(socket(
        libc::AF_INET,
        libc::SOCK_DGRAM | libc::SOCK_NONBLOCK,
        0
    ));
    assert!(socket(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDP));
    assert!(socket(
        libc::AF_NETLINK,
        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
        libc::NETLINK_ROUTE
    ));
    let pair = |domain: libc::c_int| allowed("socketpair", &[domain as u64, 0, 0]);
    assert!(pair(libc::AF_UNIX));
    assert!(!pair(libc::AF_INET));
    // IP: TCP and UDP only, no raw socket, no other protocol behind a stream or datagram.
    for (domain, kind, protocol) in [
        (libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
        (libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW),
        (libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6),
        (libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
        (libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE),
        (libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_SCTP),
        (libc::AF_INET, libc::SOCK_SEQPACKET, 0),
        (libc::AF_INET, 10, 0), // SOCK_PACKET
        (libc::AF_INET6, libc::SOCK_DCCP, 0),
    ] {
        assert!(
            !socket(domain, kind, protocol),
            "socket({domain}, {kind}, {protocol})"
        );
    }
    // Socket options by level (and at the IP levels by number): no netfilter table (iptables,
    // arptables, ebtables, IPVS, ip6tables), no per-socket IPsec policy.
    let opt =
        |name: &str, level: i64, option: i64| allowed(name, &[3, level as u64, option as u64]);
    for name in ["setsockopt", "getsockopt"] {
        for (level, option) in [
            (libc::SOL_SOCKET, libc::SO_RCVBUF),
            (libc::IPPROTO_TCP, libc::TCP_NODELAY),
            (libc::IPPROTO_UDP, libc::UDP_GRO),
            (libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP),
            (libc::IPPROTO_IP, libc::IP_TOS),
            (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL),
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
            (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
            (libc::IPPROTO_IPV6, libc::IPV6_TCLASS),
            (libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS),
        ] {
            assert!(
                opt(name, level as i64, option as i64),
                "{name}({level}, {option})"
            );
        }
        for (level, option) in [
            (0, 16),
            (0, 17),
            (0, 64),
            (0, 65),
            (0, 66),
            (0, 67),
            (0, 80),
            (0, 96),
            (0, 97),
            (0, 128),
            (0, 1152),
            (41, 34),
            (41, 35),
            (41, 64),
            (41, 65),
            (41, 68),
            (41, 69),
            (41, 80),
            // Levels nothing here uses (SOL_RAW, SOL_PACKET, SOL_ALG, SOL_TLS).
            (255, 1),
            (263, 1),
            (279, 1),
            (282, 1),
            // High bits of the option's register: the kernel reads an int (64 here).
            (41, (1 << 32) | 64),
            (0, (1 << 32) | 64),
            ((1 << 32) | 41, 64),
        ] {
            assert!(
                !opt(name, level, option),
                "{name}({level}, {option}) is allowed"
            );
        }
    }
    // Nothing allows a socket call by a greater-than (or not-equal) comparison: the kernel
    // reads these arguments as 32-bit ints, the filter compares 64 bits, and a caller sets the
    // high bits.
    for r in p.syscalls.iter().filter(|r| {
        r.names
            .iter()
            .any(|n| ["socket", "socketpair", "setsockopt", "getsockopt"].contains(&n.as_str()))
    }) {
        for a in &r.args {
            assert!(
                [
                    "SCMP_CMP_EQ",
                    "SCMP_CMP_LT",
                    "SCMP_CMP_LE",
                    "SCMP_CMP_MASKED_EQ"
                ]
                .contains(&a.op.as_str()),
                "{:?}: {} on argument {}",
                r.names,
                a.op,
                a.index
            );
        }
    }
    for (domain, protocol) in [
        (libc::AF_NETLINK, libc::NETLINK_NETFILTER),
        (libc::AF_NETLINK, libc::NETLINK_KOBJECT_UEVENT),
        (libc::AF_NETLINK, libc::NETLINK_XFRM),
        (libc::AF_NETLINK, libc::NETLINK_AUDIT),
        (libc::AF_PACKET, 0),
        (libc::AF_ALG, 0),
        (libc::AF_VSOCK, 0),
        (libc::AF_KEY, 0),
        (libc::AF_BLUETOOTH, 0),
        (libc::AF_XDP, 0),
    ] {
        assert!(
            !socket(domain, libc::SOCK_RAW, protocol),
            "socket({domain}, _, {protocol})"
        );
    }

    // Never: refused by the default, named by no rule at all.
    let never = "mount umount2 umount pivot_root setns fsopen fsconfig fsmount fspick move_mount \
         open_tree mount_setattr kexec_load kexec_file_load init_module finit_module \
         delete_module create_module query_module get_kernel_syms bpf perf_event_open ptrace \
         process_vm_readv process_vm_writev pidfd_getfd kcmp keyctl add_key request_key reboot \
         swapon swapoff open_by_handle_at name_to_handle_at userfaultfd io_uring_setup \
         io_uring_enter io_uring_register acct quotactl quotactl_fd settimeofday clock_settime \
         clock_adjtime adjtimex iopl ioperm lookup_dcookie syslog vhangup nfsservctl uselib \
         sethostname setdomainname personality modify_ldt mknod mknodat fanotify_init"
        .split_whitespace();
    let named: std::collections::BTreeSet<&str> = p.names().collect();
    for n in never {
        assert!(!named.contains(n), "{n} is named by a rule");
        assert_eq!(call(n, &[]), Verdict::Errno(libc::EPERM as u32), "{n}");
    }
}

fn yaml_file(path: &std::path::Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A Localhost profile must sit at `<kubelet root>/seccomp/<the Job's localhostProfile>` on
/// every node, else each bot pod fails with CreateContainerError. The node installer
/// (`infra/kubernetes/node-seccomp`) ships the one copy of the profile there: its ConfigMap is
/// generated from `infra/kubernetes/seccomp/<file>` itself (no second copy anywhere in infra/),
/// its DaemonSet writes into `/var/lib/kubelet/seccomp/<dir>` where the Job template's
/// `CHROMIUM_SECCOMP_PROFILE` (`<dir>/<file>`) points, only its short-lived install step runs
/// as root or sees the host path (no capability, no escalation, read-only root), and its
/// script, run here on a copy of a ConfigMap volume's layout, leaves the same bytes in place.
#[test]
fn the_node_installer_puts_the_very_profile_file_where_the_bot_jobs_name_it() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use meetbot_bot::kubernetes::{CHROMIUM_SECCOMP_PROFILE, JobTemplate};
    assert_eq!(
        JobTemplate::new("meetbot", "meetbot-bot").seccomp_profile,
        CHROMIUM_SECCOMP_PROFILE
    );
    let (dir, file) = CHROMIUM_SECCOMP_PROFILE.split_once('/').unwrap();
    assert!(!file.contains('/') && file.ends_with(".json"));
    let k8s = kubernetes_dir();
    let source = k8s.join("seccomp").join(file);
    let profile = std::fs::read(&source).unwrap();

    // The ConfigMap comes from that file, under its own name.
    let generated = yaml_file(&k8s.join("seccomp/kustomization.yaml"));
    let generators = generated["configMapGenerator"].as_array().unwrap();
    assert_eq!(generators.len(), 1);
    let config_map = generators[0]["name"].as_str().unwrap();
    assert_eq!(generators[0]["files"], serde_json::json!([file]));
    // ... and it is the only copy of the profile in infra/.
    let copies: Vec<PathBuf> = files_under(k8s.parent().unwrap())
        .into_iter()
        .filter(|f| {
            f.file_name().and_then(|n| n.to_str()) == Some(file)
                || std::fs::read(f).is_ok_and(|b| b == profile)
        })
        .collect();
    assert_eq!(copies, std::slice::from_ref(&source));

    // The installer builds on it, in kube-system, with the bot image as the base pins it.
    let node = yaml_file(&k8s.join("node-seccomp/kustomization.yaml"));
    assert_eq!(node["namespace"], "kube-system");
    assert!(node.get("configMapGenerator").is_none());
    let resources: Vec<&str> = node["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(resources, ["../seccomp", "daemonset.yaml"]);
    let base = yaml_file(&base().join("kustomization.yaml"));
    let bot_image = |k: &Value| {
        k["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "meetbot-bot")
            .cloned()
            .unwrap()
    };
    assert_eq!(bot_image(&node), bot_image(&base));

    let docs = yaml_docs(
        &std::fs::read_to_string(k8s.join("node-seccomp/daemonset.yaml")).unwrap(),
        "daemonset.yaml",
    );
    assert_eq!(docs.len(), 1);
    let ds: DaemonSet = typed(&docs[0].1, "daemonset.yaml");
    let pod = ds.spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(
        pod.host_network != Some(true) && pod.host_pid != Some(true) && pod.host_ipc != Some(true)
    );
    let volumes = pod.volumes.clone().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v.name == name).unwrap();
    let profiles = volume("profiles");
    assert_eq!(profiles.config_map.as_ref().unwrap().name, config_map);
    let host = volume("host-seccomp").host_path.clone().unwrap();
    assert_eq!(
        host.path,
        format!("/var/lib/kubelet/seccomp/{dir}"),
        "the kubelet reads a Localhost profile from <its root>/seccomp/<localhostProfile>"
    );
    assert_eq!(host.type_.as_deref(), Some("DirectoryOrCreate"));
    assert_eq!(volumes.len(), 2);

    let mut installers = Vec::new();
    let init = pod.init_containers.clone().unwrap_or_default();
    for (c, is_init) in init
        .iter()
        .map(|c| (c, true))
        .chain(pod.containers.iter().map(|c| (c, false)))
    {
        let what = &c.name;
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
        assert_ne!(sc.privileged, Some(true), "{what}");
        let caps = sc.capabilities.clone().unwrap();
        assert_eq!(caps.drop.unwrap(), ["ALL"], "{what}");
        assert!(caps.add.is_none(), "{what}");
        let r = c.resources.clone().unwrap();
        assert!(r.limits.unwrap().contains_key("memory"), "{what}: limits");
        assert_eq!(c.image.as_deref(), Some("meetbot-bot"), "{what}");
        let mounts = c.volume_mounts.clone().unwrap_or_default();
        if let Some(m) = mounts.iter().find(|m| m.name == "host-seccomp") {
            assert!(
                is_init,
                "{what}: a long-lived container with the host's seccomp directory"
            );
            let p = mounts.iter().find(|m| m.name == "profiles").unwrap();
            assert_eq!(p.read_only, Some(true));
            installers.push((c.clone(), p.mount_path.clone(), m.mount_path.clone()));
        } else {
            assert!(mounts.is_empty(), "{what}: mounts {mounts:?}");
            assert_eq!(sc.run_as_non_root, Some(true), "{what}");
            assert!(sc.run_as_user.unwrap() > 0, "{what}");
        }
    }
    assert_eq!(installers.len(), 1, "one install step");

    // Its script, on a ConfigMap volume's layout (files are links into a timestamped
    // directory), with the host directory holding an older profile.
    let (c, profiles_path, host_path) = installers.pop().unwrap();
    let command = c.command.clone().unwrap();
    assert_eq!(command[..2], ["/bin/sh", "-c"]);
    let tmp = tempfile::tempdir().unwrap();
    let volume_dir = tmp.path().join("profiles");
    let stamped = volume_dir.join("..2026_01_01_00_00_00.000000001");
    std::fs::create_dir_all(&stamped).unwrap();
    std::fs::write(stamped.join(file), &profile).unwrap();
    std::os::unix::fs::symlink(stamped.file_name().unwrap(), volume_dir.join("..data")).unwrap();
    std::os::unix::fs::symlink(format!("..data/{file}"), volume_dir.join(file)).unwrap();
    let host_dir = tmp.path().join("host-seccomp");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(
        host_dir.join(file),
        b"{\"defaultAction\": \"SCMP_ACT_ALLOW\"}",
    )
    .unwrap();
    let script = command[2]
        .replace(&profiles_path, volume_dir.to_str().unwrap())
        .replace(&host_path, host_dir.to_str().unwrap());
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = host_dir.join(file);
    assert!(!installed.symlink_metadata().unwrap().is_symlink());
    assert_eq!(std::fs::read(&installed).unwrap(), profile);
    let left: Vec<_> = std::fs::read_dir(&host_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        [std::ffi::OsString::from(file)],
        "nothing else left behind"
    );

    // As kustomize renders it, where kubectl is installed: the ConfigMap holds the file byte
    // for byte, and the DaemonSet mounts that ConfigMap (its name carries the content's hash).
    let Ok(out) = std::process::Command::new("kubectl")
        .args(["kustomize"])
        .arg(k8s.join("node-seccomp"))
        .output()
    else {
        eprintln!("kubectl is not installed: the rendered ConfigMap is not checked");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = yaml_docs(&String::from_utf8(out.stdout).unwrap(), "kubectl kustomize");
    assert_eq!(rendered.len(), 2);
    let cm: k8s_openapi::api::core::v1::ConfigMap = typed(
        &rendered
            .iter()
            .find(|(_, d)| d["kind"] == "ConfigMap")
            .unwrap()
            .1,
        "rendered",
    );
    assert_eq!(
        cm.data.as_ref().unwrap()[file].as_bytes(),
        profile.as_slice()
    );
    assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
    let ds: DaemonSet = typed(
        &rendered
            .iter()
            .find(|(_, d)| d["kind"] == "DaemonSet")
            .unwrap()
            .1,
        "rendered",
    );
    let mounted = ds.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    assert!(mounted.iter().any(|v| {
        v.config_map
            .as_ref()
            .is_some_and(|c| Some(&c.name) == cm.metadata.name.as_ref())
    }));
}

/// One comparison of a libseccomp rule (`struct scmp_arg_cmp`).
#[repr(C)]
struct ScmpArgCmp {
    arg: libc::c_uint,
    op: libc::c_int,
    datum_a: u64,
    datum_b: u64,
}

/// `p` compiled to the BPF program the kernel runs, by libseccomp (the library runc and crun
/// build a pod's filter with) and as they do: every listed architecture added, names this
/// libseccomp does not know skipped, one rule per name and entry.
fn compile_with_libseccomp(p: &SeccompProfile) -> Vec<libc::sock_filter> {
    use std::io::{Read, Seek};
    use std::os::fd::FromRawFd;
    type Ctx = *mut libc::c_void;
    let action = |a: &str, errno: Option<u32>| match verdict(a, errno) {
        Verdict::Allow => 0x7fff_0000u32,
        Verdict::Errno(e) => 0x0005_0000 | (e & 0xffff),
    };
    let op = |o: &str| match o {
        "SCMP_CMP_NE" => 1,
        "SCMP_CMP_LT" => 2,
        "SCMP_CMP_LE" => 3,
        "SCMP_CMP_EQ" => 4,
        "SCMP_CMP_GE" => 5,
        "SCMP_CMP_GT" => 6,
        "SCMP_CMP_MASKED_EQ" => 7,
        o => panic!("unknown comparison {o}"),
    };
    // SAFETY: the symbols are libseccomp's documented C API with these signatures; the context
    // lives until seccomp_release.
    unsafe {
        let lib = libc::dlopen(c"libseccomp.so.2".as_ptr(), libc::RTLD_NOW);
        assert!(
            !lib.is_null(),
            "libseccomp.so.2 is not installed: install libseccomp2 (what runc and crun use)"
        );
        let sym = |name: &std::ffi::CStr| {
            let s = libc::dlsym(lib, name.as_ptr());
            assert!(!s.is_null(), "libseccomp lacks {name:?}");
            s
        };
        let init: extern "C" fn(u32) -> Ctx = std::mem::transmute(sym(c"seccomp_init"));
        let arch_add: extern "C" fn(Ctx, u32) -> libc::c_int =
            std::mem::transmute(sym(c"seccomp_arch_add"));
        let resolve: extern "C" fn(*const libc::c_char) -> libc::c_int =
            std::mem::transmute(sym(c"seccomp_syscall_resolve_name"));
        let rule_add: extern "C" fn(
            Ctx,
            u32,
            libc::c_int,
            libc::c_uint,
            *const ScmpArgCmp,
        ) -> libc::c_int = std::mem::transmute(sym(c"seccomp_rule_add_array"));
        let export: extern "C" fn(Ctx, libc::c_int) -> libc::c_int =
            std::mem::transmute(sym(c"seccomp_export_bpf"));
        let release: extern "C" fn(Ctx) = std::mem::transmute(sym(c"seccomp_release"));

        let ctx = init(action(&p.default_action, p.default_errno_ret));
        assert!(!ctx.is_null());
        for a in &p.architectures {
            let token = match a.as_str() {
                "SCMP_ARCH_X86_64" => 0xc000_003e,
                "SCMP_ARCH_AARCH64" => 0xc000_00b7,
                a => panic!("architecture {a}"),
            };
            let rc = arch_add(ctx, token);
            assert!(rc == 0 || rc == -libc::EEXIST, "{a}: {rc}");
        }
        for r in &p.syscalls {
            let cmps: Vec<ScmpArgCmp> = r
                .args
                .iter()
                .map(|a| ScmpArgCmp {
                    arg: a.index as libc::c_uint,
                    op: op(&a.op),
                    datum_a: a.value,
                    datum_b: a.value_two,
                })
                .collect();
            for n in &r.names {
                let name = std::ffi::CString::new(n.as_str()).unwrap();
                let nr = resolve(name.as_ptr());
                if nr == -1 {
                    continue; // unknown to this libseccomp: runc skips it too
                }
                let rc = rule_add(
                    ctx,
                    action(&r.action, r.errno_ret),
                    nr,
                    cmps.len() as libc::c_uint,
                    cmps.as_ptr(),
                );
                assert_eq!(rc, 0, "rule for {n}");
            }
        }
        let fd = libc::memfd_create(c"bpf".as_ptr(), 0);
        assert!(fd >= 0);
        let mut f = std::fs::File::from_raw_fd(fd);
        assert_eq!(export(ctx, fd), 0);
        release(ctx);
        f.rewind().unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() % 8, 0);
        bytes
            .chunks(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect()
    }
}

/// The processes below `root` (by parent links in /proc).
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}

/// A renderer of `browser`'s that is sandboxed as Chromium's namespace sandbox does it: own
/// user, PID (nested: the zygote's, then its own) and network namespaces, and Chromium's
/// seccomp filter on top of the pod's.
fn sandboxed_renderer(browser: u32) -> Option<u32> {
    let ns = |pid: &str, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
    descendants(browser).into_iter().find(|pid| {
        let p = pid.to_string();
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        String::from_utf8_lossy(&cmdline).contains("--type=renderer")
            && ns(&p, "user").is_some()
            && ns(&p, "user") != ns("self", "user")
            && ns(&p, "net") != ns("self", "net")
            && field("NSpid:").len() >= 2
            && field("Seccomp_filters:")
                .first()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 2)
    })
}

/// What came of starting the bot's Chromium under a profile.
enum ChromiumRun {
    /// The page's report ("connected <bytes>"), and whether a sandboxed renderer was seen.
    Reported(String, bool),
    /// Chromium ended first; its error output.
    Ended(String),
}

/// Starts Chromium as the bot does (its flags, the sandbox on; uid 10001 when the test runs as
/// root, since Chromium refuses its sandbox as root), no_new_privs set and `filter` loaded
/// right before exec as the runtime does, on a local page that sends a fake microphone's
/// audio over a WebRTC connection to itself and reports what arrived.
async fn chromium_under(filter: Vec<libc::sock_filter>) -> ChromiumRun {
    use std::os::unix::process::CommandExt;
    const PAGE: &str = r#"<html><body><script>
(async () => {
  let r;
  try {
    const s = await navigator.mediaDevices.getUserMedia({audio: true});
    const a = new RTCPeerConnection(), b = new RTCPeerConnection();
    a.onicecandidate = e => e.candidate && b.addIceCandidate(e.candidate);
    b.onicecandidate = e => e.candidate && a.addIceCandidate(e.candidate);
    s.getTracks().forEach(t => a.addTrack(t, s));
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    for (let i = 0; i < 100 && b.connectionState !== 'connected'; i++) await new Promise(r => setTimeout(r, 100));
    await new Promise(r => setTimeout(r, 1000));
    let bytes = 0;
    (await b.getStats()).forEach(x => { if (x.type === 'inbound-rtp') bytes += x.bytesReceived; });
    r = b.connectionState + ' ' + bytes;
  } catch (e) { r = 'error ' + e; }
  fetch('/result?r=' + encodeURIComponent(r));
})();
</script></body></html>"#;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Html(PAGE) }),
        )
        .route(
            "/result",
            axum::routing::get(move |q: axum::extract::Query<BTreeMap<String, String>>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(q.0.get("r").cloned().unwrap_or_default()).await;
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        std::os::unix::fs::chown(dir.path(), Some(10001), Some(10001)).unwrap();
    }
    let settings = meetbot_bot::browser::BrowserSettings::default();
    assert!(!settings.no_sandbox);
    let mut cmd = std::process::Command::new(&settings.chromium);
    cmd.args(
        meetbot_bot::browser::chromium_args(&settings)
            .iter()
            .map(|a| format!("--{a}")),
    )
    .arg(format!(
        "--user-data-dir={}",
        dir.path().join("profile").display()
    ))
    .arg(format!("http://{addr}/"))
    .env("HOME", dir.path())
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
    .process_group(0);
    if root {
        cmd.uid(10001).gid(10001);
    }
    // SAFETY: only prctl between fork and exec (async-signal-safe); the program is built.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &prog as *const libc::sock_fprog as libc::c_ulong,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start Chromium (bot.browser.chromium)");
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut sandboxed = false;
    let outcome = loop {
        sandboxed |= sandboxed_renderer(pid).is_some();
        if let Ok(r) = rx.try_recv() {
            sandboxed |= sandboxed_renderer(pid).is_some();
            break ChromiumRun::Reported(r, sandboxed);
        }
        if child.try_wait().unwrap().is_some() || tokio::time::Instant::now() > deadline {
            let err = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
            let tail: String = err.lines().rev().take(15).collect::<Vec<_>>().join("\n");
            break ChromiumRun::Ended(tail);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // The browser's whole process group (it was started in one of its own).
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    let _ = child.wait();
    server.abort();
    outcome
}

/// The profile as the nodes get it runs the bot's real Chromium (the bot image's Debian
/// build) with its sandbox on: renderers in their own user, PID and network namespaces under
/// Chromium's own filter on top of ours, and a fake microphone's audio crossing a WebRTC
/// connection. The same profile without the namespace allowance (the runtime's default on
/// this point) leaves Chromium without a usable sandbox, so it does not start: the allowance
/// is what the sandbox stands on.
#[tokio::test(flavor = "multi_thread")]
async fn chromium_runs_sandboxed_with_webrtc_audio_under_the_bot_seccomp_profile_and_not_without_its_namespace_rule()
 {
    let p = SeccompProfile::load();
    match chromium_under(compile_with_libseccomp(&p)).await {
        ChromiumRun::Reported(r, sandboxed) => {
            let (state, bytes) = r.split_once(' ').unwrap_or((&r, "0"));
            assert_eq!(state, "connected", "{r}");
            assert!(
                bytes.parse::<u64>().unwrap_or(0) > 0,
                "no audio arrived: {r}"
            );
            assert!(sandboxed, "no renderer ran in Chromium's namespace sandbox");
        }
        ChromiumRun::Ended(err) => panic!(
            "Chromium did not run under the profile (nodes need unprivileged user namespaces: \
             user.max_user_namespaces > 0, and no AppArmor restriction on them):\n{err}"
        ),
    }

    let mut without = SeccompProfile::load();
    let namespaces = (libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNET) as u64;
    for r in without
        .syscalls
        .iter_mut()
        .filter(|r| r.names.iter().any(|n| n == "clone" || n == "unshare"))
    {
        r.args[0].value |= namespaces;
    }
    match chromium_under(compile_with_libseccomp(&without)).await {
        ChromiumRun::Reported(r, _) => panic!("Chromium ran without user namespaces: {r}"),
        ChromiumRun::Ended(err) => assert!(err.contains("sandbox"), "{err}"),
    }
}

/// What the Pod Security Standards' `restricted` level (everything of `baseline` included)
/// refuses in a pod (its metadata and spec as JSON), one line per failed control, as the Pod
/// Security admission controller checks it at its latest version: host process, host
/// namespaces, privileged, capabilities (drop ALL, add NET_BIND_SERVICE at most), volume types,
/// host ports, host probes and lifecycle hooks, AppArmor, SELinux, /proc mount, seccomp, sysctls,
/// privilege escalation, non-root, uid 0. Its exemptions (Windows pods; `hostUsers: false` for
/// the non-root, uid and /proc checks) are not taken: meetbot's pods are Linux pods in the
/// node's user namespace.
fn restricted_violations(meta: &Value, spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let absent_or = |v: Option<&Value>, allowed: &[Value]| v.is_none_or(|v| allowed.contains(v));
    let f = || Value::Bool(false);
    let psc = spec.get("securityContext").cloned().unwrap_or(Value::Null);
    let containers: Vec<(String, &Value)> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .map(|c| (c["name"].as_str().unwrap_or("?").to_string(), c))
        .collect();
    let contexts: Vec<(String, Value)> = std::iter::once(("pod".to_string(), psc.clone()))
        .chain(
            containers
                .iter()
                .map(|(n, c)| (n.clone(), c["securityContext"].clone())),
        )
        .collect();

    // baseline: HostProcess
    for (who, sc) in &contexts {
        if !absent_or(sc.pointer("/windowsOptions/hostProcess"), &[f()]) {
            out.push(format!("{who}: windowsOptions.hostProcess"));
        }
    }
    // baseline: host namespaces
    for k in ["hostNetwork", "hostPID", "hostIPC"] {
        if !absent_or(spec.get(k), &[f()]) {
            out.push(format!("pod: {k}"));
        }
    }
    for (who, c) in &containers {
        let sc = &c["securityContext"];
        // baseline: privileged containers
        if !absent_or(sc.get("privileged"), &[f()]) {
            out.push(format!("{who}: privileged"));
        }
        // restricted: capabilities (drop ALL, add NET_BIND_SERVICE at most; stricter than
        // baseline's default set)
        let drops = sc.pointer("/capabilities/drop").and_then(Value::as_array);
        if !drops.is_some_and(|d| d.iter().any(|c| c == "ALL")) {
            out.push(format!("{who}: capabilities.drop lacks ALL"));
        }
        for a in sc
            .pointer("/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if a != "NET_BIND_SERVICE" {
                out.push(format!("{who}: capabilities.add {a}"));
            }
        }
        // baseline: host ports
        for p in c["ports"].as_array().into_iter().flatten() {
            if !absent_or(p.get("hostPort"), &[Value::from(0)]) {
                out.push(format!("{who}: hostPort {}", p["hostPort"]));
            }
        }
        // baseline: host probes and lifecycle hooks
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            for kind in ["httpGet", "tcpSocket"] {
                if !absent_or(c[probe][kind].get("host"), &[Value::from("")]) {
                    out.push(format!("{who}: {probe}.{kind}.host"));
                }
            }
        }
        for hook in ["postStart", "preStop"] {
            for kind in ["httpGet", "tcpSocket"] {
                if !absent_or(c["lifecycle"][hook][kind].get("host"), &[Value::from("")]) {
                    out.push(format!("{who}: lifecycle.{hook}.{kind}.host"));
                }
            }
        }
        // baseline and restricted: /proc mount type
        if !absent_or(sc.get("procMount"), &[Value::from("Default")]) {
            out.push(format!("{who}: procMount {}", sc["procMount"]));
        }
        // restricted: privilege escalation (must be set, to false)
        if sc.get("allowPrivilegeEscalation") != Some(&f()) {
            out.push(format!("{who}: allowPrivilegeEscalation is not false"));
        }
        // restricted: running as non-root (true at the pod, not overridden; or true here)
        let non_root = match sc.get("runAsNonRoot") {
            Some(v) => v == &Value::Bool(true),
            None => psc.get("runAsNonRoot") == Some(&Value::Bool(true)),
        };
        if !non_root {
            out.push(format!("{who}: runAsNonRoot is not true"));
        }
        // restricted: seccomp (RuntimeDefault or Localhost, here or at the pod)
        let profile = sc
            .pointer("/seccompProfile/type")
            .or(psc.pointer("/seccompProfile/type"));
        if !profile.is_some_and(|t| t == "RuntimeDefault" || t == "Localhost") {
            out.push(format!("{who}: seccompProfile {profile:?}"));
        }
    }
    for (who, sc) in &contexts {
        // baseline: AppArmor
        if !absent_or(
            sc.pointer("/appArmorProfile/type"),
            &[Value::from("RuntimeDefault"), Value::from("Localhost")],
        ) {
            out.push(format!("{who}: appArmorProfile {}", sc["appArmorProfile"]));
        }
        // baseline: SELinux
        let selinux_types = [
            "",
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t",
        ]
        .map(Value::from);
        if !absent_or(sc.pointer("/seLinuxOptions/type"), &selinux_types) {
            out.push(format!("{who}: seLinuxOptions.type"));
        }
        for k in ["user", "role"] {
            if !absent_or(sc["seLinuxOptions"].get(k), &[Value::from("")]) {
                out.push(format!("{who}: seLinuxOptions.{k}"));
            }
        }
        // restricted: not uid 0
        if sc.get("runAsUser") == Some(&Value::from(0)) {
            out.push(format!("{who}: runAsUser 0"));
        }
        // baseline: seccomp never Unconfined (pod level: also when containers set theirs)
        if sc.pointer("/seccompProfile/type") == Some(&Value::from("Unconfined")) {
            out.push(format!("{who}: seccompProfile Unconfined"));
        }
    }
    // baseline: AppArmor and seccomp annotations
    for (k, v) in meta["annotations"].as_object().into_iter().flatten() {
        let v = v.as_str().unwrap_or("");
        if k.starts_with("container.apparmor.security.beta.kubernetes.io/")
            && !(v.is_empty() || v == "runtime/default" || v.starts_with("localhost/"))
        {
            out.push(format!("annotation {k}: {v}"));
        }
        if k.starts_with("seccomp.security.alpha.kubernetes.io/")
            || k.starts_with("container.seccomp.security.alpha.kubernetes.io/")
        {
            out.push(format!("annotation {k}: the pre-1.19 seccomp annotations"));
        }
    }
    // baseline: sysctls (the safe set only)
    let safe = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_notsent_lowat",
    ];
    for s in psc["sysctls"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or("");
        if !safe.contains(&name) {
            out.push(format!("pod: sysctl {name}"));
        }
    }
    // restricted: volume types (hostPath and every other node- or network-backed source)
    let allowed = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
        "image",
    ];
    for vol in spec["volumes"].as_array().into_iter().flatten() {
        for k in vol.as_object().unwrap().keys() {
            if k != "name" && !allowed.contains(&k.as_str()) {
                out.push(format!("volume {}: {k}", vol["name"]));
            }
        }
    }
    out
}

/// The bot Job the launcher makes from the base's configuration, as JSON.
fn bot_job_from_the_base(o: &Objects) -> Value {
    use meetbot_bot::kubernetes::{JobTemplate, manifest};
    let cfg = base_config(o);
    let spec = meetbot_bot::launcher::LaunchSpec {
        tenant: "clinic01".parse().unwrap(),
        job_id: "j1".into(),
        meeting_id: "m1".into(),
        max_duration: std::time::Duration::from_secs(3600),
        ticket: meetbot_bot::ticket::EncodedTicket::new("ticket-text".into()),
    };
    serde_json::to_value(manifest(
        &JobTemplate::from_config(&cfg.launcher.kubernetes),
        &spec,
    ))
    .unwrap()
}

/// A launcher that was taken over may create Jobs in its namespace: Pod Security admission at
/// `restricted` is what keeps those pods unprivileged. The base ships its namespace with
/// `restricted` enforced (pinned to a version, audited and warned at the latest), named as
/// the configuration sends bot Jobs there; every pod template of the base and the bot Job
/// the launcher makes from the base's configuration meet every control of the standard; and
/// the same checks refuse each thing such a launcher would try (host namespaces, hostPath,
/// privileged, capabilities, root, escalation, no or an unconfined seccomp profile, host
/// ports, unmasked /proc, unsafe sysctls, SELinux or AppArmor overrides, probes aimed at the
/// node).
#[test]
fn every_pod_of_the_base_and_every_bot_job_meet_the_restricted_pod_security_level_the_namespace_enforces()
 {
    let (k, docs) = base_documents();
    let o = load(docs);

    // The namespace, enforcing `restricted`.
    assert_eq!(o.namespaces.len(), 1, "the base ships one Namespace");
    let ns = &o.namespaces[0];
    let name = ns.metadata.name.clone().unwrap();
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    let label = |k: &str| {
        labels
            .get(&format!("pod-security.kubernetes.io/{k}"))
            .cloned()
            .unwrap_or_else(|| panic!("Namespace {name}: no pod-security.kubernetes.io/{k}"))
    };
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(label(mode), "restricted", "{mode}");
    }
    let pinned = label("enforce-version");
    let minor: u32 = pinned
        .strip_prefix("v1.")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("enforce-version {pinned}: pin a v1.N"));
    assert!(
        minor >= 25,
        "enforce-version {pinned}: Pod Security admission is GA from v1.25"
    );
    assert_eq!(label("audit-version"), "latest");
    assert_eq!(label("warn-version"), "latest");
    // Everything of the base goes there, bot Jobs included.
    assert_eq!(k["namespace"].as_str(), Some(name.as_str()));
    let cfg = base_config(&o);
    assert_eq!(cfg.launcher.kubernetes.namespace, name);
    for b in &o.bindings {
        for s in b.subjects.iter().flatten() {
            assert!(
                s.namespace.is_none() || s.namespace.as_deref() == Some(&name),
                "{:?}: a subject in another namespace",
                b.metadata.name
            );
        }
    }

    // Every pod template: the services' Deployments and the bot Job.
    let mut templates: Vec<(String, Value)> = o
        .deployments
        .iter()
        .map(|d| {
            let t = serde_json::to_value(&d.spec.as_ref().unwrap().template).unwrap();
            (
                format!("Deployment {}", d.metadata.name.clone().unwrap()),
                t,
            )
        })
        .collect();
    let job = bot_job_from_the_base(&o);
    assert_eq!(job["metadata"]["namespace"], Value::from(name.clone()));
    templates.push(("the bot Job".into(), job["spec"]["template"].clone()));
    assert_eq!(templates.len(), 7);
    for (what, t) in &templates {
        let v = restricted_violations(&t["metadata"], &t["spec"]);
        assert!(v.is_empty(), "{what} is refused at restricted: {v:?}");
    }

    // The same checks refuse what a taken-over launcher would put in a Job.
    let bot = job["spec"]["template"].clone();
    let c = "/spec/containers/0/securityContext";
    let attempts: Vec<(String, &str, Value)> = vec![
        ("/spec/hostPID".into(), "hostPID", Value::Bool(true)),
        ("/spec/hostNetwork".into(), "hostNetwork", Value::Bool(true)),
        ("/spec/hostIPC".into(), "hostIPC", Value::Bool(true)),
        (
            "/spec/volumes/1".into(),
            "hostPath",
            serde_json::json!({"name": "root", "hostPath": {"path": "/"}}),
        ),
        (
            "/spec/volumes/1".into(),
            "nfs",
            serde_json::json!({"name": "n", "nfs": {"server": "10.0.0.1", "path": "/"}}),
        ),
        (format!("{c}/privileged"), "privileged", Value::Bool(true)),
        (
            format!("{c}/allowPrivilegeEscalation"),
            "allowPrivilegeEscalation",
            Value::Bool(true),
        ),
        (
            format!("{c}/capabilities/add"),
            "SYS_ADMIN",
            serde_json::json!(["SYS_ADMIN"]),
        ),
        (
            format!("{c}/capabilities/drop"),
            "lacks ALL",
            serde_json::json!(["NET_RAW"]),
        ),
        (format!("{c}/runAsUser"), "runAsUser 0", Value::from(0)),
        (
            format!("{c}/runAsNonRoot"),
            "runAsNonRoot",
            Value::Bool(false),
        ),
        (
            format!("{c}/seccompProfile"),
            "Unconfined",
            serde_json::json!({"type": "Unconfined"}),
        ),
        (
            format!("{c}/procMount"),
            "procMount",
            Value::from("Unmasked"),
        ),
        (
            format!("{c}/seLinuxOptions"),
            "seLinuxOptions.type",
            serde_json::json!({"type": "spc_t"}),
        ),
        (
            format!("{c}/appArmorProfile"),
            "appArmorProfile",
            serde_json::json!({"type": "Unconfined"}),
        ),
        (
            format!("{c}/windowsOptions"),
            "hostProcess",
            serde_json::json!({"hostProcess": true}),
        ),
        (
            "/spec/securityContext/sysctls".into(),
            "kernel.core_pattern",
            serde_json::json!([{"name": "kernel.core_pattern", "value": "|/tmp/x"}]),
        ),
        (
            "/spec/containers/0/ports".into(),
            "hostPort",
            serde_json::json!([{"containerPort": 22, "hostPort": 22}]),
        ),
        (
            "/spec/containers/0/readinessProbe".into(),
            "readinessProbe.httpGet.host",
            serde_json::json!({"httpGet": {"host": "169.254.169.254", "port": 80}}),
        ),
        (
            "/spec/initContainers".into(),
            "privileged",
            serde_json::json!([{"name": "x", "image": "x", "securityContext": {
                "privileged": true, "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]}}}]),
        ),
        (
            "/metadata/annotations".into(),
            "apparmor",
            serde_json::json!({"container.apparmor.security.beta.kubernetes.io/bot": "unconfined"}),
        ),
    ];
    for (path, expect, value) in attempts {
        let mut t = bot.clone();
        set_json(&mut t, &path, value);
        let v = restricted_violations(&t["metadata"], &t["spec"]);
        assert!(
            v.iter().any(|m| m.contains(expect)),
            "{path}: not refused for {expect}: {v:?}"
        );
    }
    // No profile at all (neither the container's nor the pod's) is refused too.
    let mut t = bot.clone();
    t.pointer_mut("/spec/containers/0/securityContext")
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("seccompProfile");
    assert!(
        restricted_violations(&t["metadata"], &t["spec"])
            .iter()
            .any(|m| m.contains("seccompProfile None"))
    );
}

/// Sets the value at a JSON pointer, making the objects (or the array element) on the way.
fn set_json(v: &mut Value, path: &str, value: Value) {
    let (parent, last) = path.rsplit_once('/').unwrap();
    let mut at = v;
    for part in parent.split('/').skip(1) {
        at = match at {
            Value::Array(a) => &mut a[part.parse::<usize>().unwrap()],
            other => {
                if other.is_null() {
                    *other = Value::Object(Default::default());
                }
                other
                    .as_object_mut()
                    .unwrap()
                    .entry(part.to_string())
                    .or_insert(Value::Null)
            }
        };
    }
    match at {
        Value::Array(a) => {
            let i: usize = last.parse().unwrap();
            if i < a.len() {
                a[i] = value;
            } else {
                a.push(value);
            }
        }
        other => {
            if other.is_null() {
                *other = Value::Object(Default::default());
            }
            other
                .as_object_mut()
                .unwrap()
                .insert(last.to_string(), value);
        }
    }
}

/// `kubectl kustomize` of an overlay that only sets `namespace:` over the base, in a
/// directory of its own (kustomize takes only relative paths to a base).
fn kustomize_with_namespace(namespace: Option<&str>) -> Option<Vec<(String, Value)>> {
    let dir = tempfile::tempdir().unwrap();
    let depth = dir.path().components().count() - 1;
    let base = base();
    let relative = format!(
        "{}{}",
        "../".repeat(depth),
        base.strip_prefix("/").unwrap().display()
    );
    let mut k = format!("resources:\n  - {relative}\n");
    if let Some(ns) = namespace {
        k.push_str(&format!("namespace: {ns}\n"));
    }
    std::fs::write(dir.path().join("kustomization.yaml"), k).unwrap();
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir.path())
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(yaml_docs(
        &String::from_utf8(out.stdout).unwrap(),
        "kubectl kustomize",
    ))
}

/// Where kubectl is installed: the base as kustomize renders it puts every object in the
/// namespace its Namespace object (with the Pod Security labels) names, the launcher's
/// RoleBinding names its account there, and an overlay's `namespace:` moves all of it, the
/// Namespace object and its labels included, so the enforced namespace is always the one the
/// pods land in.
#[test]
fn kustomize_renames_the_enforced_namespace_with_everything_in_it() {
    for (overlay, want) in [(None, "meetbot"), (Some("meetbot-prod"), "meetbot-prod")] {
        let Some(docs) = kustomize_with_namespace(overlay) else {
            eprintln!("kubectl is not installed: the files themselves are checked above");
            return;
        };
        let mut namespaces = Vec::new();
        for (_, d) in &docs {
            let kind = d["kind"].as_str().unwrap();
            let name = d["metadata"]["name"].as_str().unwrap();
            if kind == "Namespace" {
                namespaces.push(d.clone());
                continue;
            }
            assert_eq!(
                d["metadata"]["namespace"].as_str(),
                Some(want),
                "{kind} {name} ({overlay:?})"
            );
            for s in d["subjects"].as_array().into_iter().flatten() {
                assert_eq!(
                    s["namespace"].as_str(),
                    Some(want),
                    "{kind} {name}: subject"
                );
            }
        }
        assert_eq!(namespaces.len(), 1);
        assert_eq!(namespaces[0]["metadata"]["name"].as_str(), Some(want));
        let labels = &namespaces[0]["metadata"]["labels"];
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert!(
            labels["pod-security.kubernetes.io/enforce-version"]
                .as_str()
                .is_some_and(|v| v.starts_with("v1."))
        );
        assert!(docs.len() > 25);
    }
}

/// An option value a probe passes.
#[derive(Clone, Copy, Debug)]
enum OptValue {
    /// An int, as the usual options take.
    Int(libc::c_int),
    /// 1 KiB of zeros: an empty table for the netfilter options (refused by the table code
    /// before it looks any table up, where the kernel gets that far).
    Zeros,
}

/// One call a child process makes under a filter.
#[derive(Clone, Copy, Debug)]
enum Probe {
    /// socket(domain, type, protocol).
    Socket(libc::c_int, libc::c_int, libc::c_int),
    /// setsockopt on a fresh socket(domain, type, 0): level and option number as the 64-bit
    /// registers the filter sees.
    Set(libc::c_int, libc::c_int, i64, i64, OptValue),
    /// getsockopt likewise, with room for an int (the netfilter GET options refuse that
    /// length before anything else, where the kernel gets that far).
    Get(libc::c_int, libc::c_int, i64, i64),
}

/// What a probe's socket(domain, type, 0) answered when it failed: its errno plus this.
const PROBE_SOCKET_FAILED: i32 = 1000;

/// Forks a child that loads `filter` (with no_new_privs, as the runtime does; none: no
/// filter), becomes root of a new user and network namespace as Chromium's sandbox (and
/// whoever took the bot over) may, then makes each probe: 0 where it succeeded, else its
/// errno. The first answer is the unshare's. Between fork and exit the child makes system
/// calls only (nothing allocates), and whatever it changes is in its own network namespace.
fn probe_under(filter: Option<&[libc::sock_filter]>, probes: &[Probe]) -> Vec<i32> {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let zeros = [0u8; 1024];
    let prog = filter.map(|f| libc::sock_fprog {
        len: f.len() as u16,
        filter: f.as_ptr() as *mut libc::sock_filter,
    });
    // SAFETY: the child makes system calls only (async-signal-safe) and leaves by _exit; the
    // buffers it passes live on this stack.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            let errno = || *libc::__errno_location();
            let answer = |r: libc::c_long| if r == 0 { 0 } else { errno() };
            let report = |r: i32| {
                libc::write(fds[1], (&r as *const i32).cast(), 4);
            };
            if let Some(prog) = &prog
                && (libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                        prog as *const libc::sock_fprog as libc::c_ulong,
                    ) != 0)
            {
                libc::_exit(101);
            }
            report(answer(
                libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) as libc::c_long,
            ));
            for p in probes {
                let r = match *p {
                    Probe::Socket(domain, kind, protocol) => {
                        let fd = libc::socket(domain, kind, protocol);
                        if fd >= 0 {
                            libc::close(fd);
                            0
                        } else {
                            errno()
                        }
                    }
                    Probe::Set(domain, kind, level, name, _)
                    | Probe::Get(domain, kind, level, name) => {
                        let fd = libc::socket(domain, kind, 0);
                        if fd < 0 {
                            PROBE_SOCKET_FAILED + errno()
                        } else {
                            let r = match *p {
                                Probe::Set(.., OptValue::Int(v)) => libc::syscall(
                                    libc::SYS_setsockopt,
                                    fd as libc::c_long,
                                    level,
                                    name,
                                    &v as *const libc::c_int,
                                    4 as libc::c_long,
                                ),
                                Probe::Set(.., OptValue::Zeros) => libc::syscall(
                                    libc::SYS_setsockopt,
                                    fd as libc::c_long,
                                    level,
                                    name,
                                    zeros.as_ptr(),
                                    zeros.len() as libc::c_long,
                                ),
                                _ => {
                                    let mut v: libc::c_int = 0;
                                    let mut len: libc::socklen_t = 4;
                                    libc::syscall(
                                        libc::SYS_getsockopt,
                                        fd as libc::c_long,
                                        level,
                                        name,
                                        &mut v as *mut libc::c_int,
                                        &mut len as *mut libc::socklen_t,
                                    )
                                }
                            };
                            let r = answer(r);
                            libc::close(fd);
                            r
                        }
                    }
                };
                report(r);
            }
            libc::_exit(0);
        }
    }
    unsafe { libc::close(fds[1]) };
    let mut bytes = Vec::new();
    {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        let mut r = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        r.read_to_end(&mut bytes).unwrap();
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the probing child ended with status {status:#x} (101: the filter did not load)"
    );
    bytes
        .chunks(4)
        .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

/// A taken-over bot, root of a user and network namespace of its own (what the profile allows
/// for Chromium's sandbox), reaches no netfilter table and makes no raw socket under the
/// profile, as the kernel runs it (compiled by libseccomp as the runtime does, loaded in a
/// child process): IPT_SO_SET_REPLACE / ADD_COUNTERS, arptables, ebtables, IPVS, ip6tables,
/// their GET options and per-socket IPsec policies answer EPERM, also with the option number
/// hidden behind high bits of its register (the kernel reads an int; a greater-than test would
/// see a big number), and so do raw IPv4 and IPv6 sockets and other protocols behind datagram
/// sockets. Without the filter the same calls reach the kernel's code (an answer other than
/// EPERM: the probes mean something). What a Chromium/WebRTC/tokio process sets works under
/// it: TCP, UDP, Unix and route netlink sockets, IP_TOS and IPV6_TCLASS (WebRTC's DSCP),
/// IPV6_V6ONLY, buffers, TCP_NODELAY, multicast TTL, packet info.
#[test]
fn the_bot_seccomp_profile_refuses_netfilter_tables_and_raw_sockets_in_a_user_namespace_and_keeps_what_webrtc_sets()
 {
    use Probe::*;
    let (inet, inet6) = (libc::AF_INET, libc::AF_INET6);
    let (dgram, stream) = (libc::SOCK_DGRAM, libc::SOCK_STREAM);
    let (ip, ipv6) = (libc::IPPROTO_IP as i64, libc::IPPROTO_IPV6 as i64);
    let int = |v: libc::c_int| OptValue::Int(v);
    let high = 1i64 << 32;
    let refused = [
        Socket(inet, libc::SOCK_RAW, libc::IPPROTO_ICMP),
        Socket(inet, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW),
        Socket(inet6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6),
        Socket(inet, dgram, libc::IPPROTO_UDPLITE),
        // iptables (IPT_SO_SET_REPLACE, IPT_SO_SET_ADD_COUNTERS), arptables, ebtables, IPVS
        Set(inet, dgram, ip, 64, OptValue::Zeros),
        Set(inet, dgram, ip, 65, OptValue::Zeros),
        Set(inet, dgram, ip, 96, OptValue::Zeros),
        Set(inet, dgram, ip, 97, OptValue::Zeros),
        Set(inet, dgram, ip, 128, OptValue::Zeros),
        Set(inet, dgram, ip, 1152 + 2, OptValue::Zeros),
        // ip6tables (IP6T_SO_SET_REPLACE, IP6T_SO_SET_ADD_COUNTERS)
        Set(inet6, dgram, ipv6, 64, OptValue::Zeros),
        Set(inet6, dgram, ipv6, 65, OptValue::Zeros),
        // the same with high bits in the option's register: the kernel reads 64
        Set(inet6, dgram, ipv6, high | 64, OptValue::Zeros),
        Set(inet, dgram, ip, high | 64, OptValue::Zeros),
        // per-socket IPsec policies (IP_IPSEC_POLICY, IP_XFRM_POLICY, and IPv6's)
        Set(
            inet,
            dgram,
            ip,
            libc::IP_XFRM_POLICY as i64,
            OptValue::Zeros,
        ),
        Set(inet, dgram, ip, 16, OptValue::Zeros),
        Set(inet6, dgram, ipv6, 34, OptValue::Zeros),
        Set(inet6, dgram, ipv6, 35, OptValue::Zeros),
        // the tables' GET side: IPT_SO_GET_INFO, IP6T_SO_GET_REVISION_MATCH (loads modules)
        Get(inet, dgram, ip, 64),
        Get(inet6, dgram, ipv6, 68),
    ];
    let allowed = [
        Socket(libc::AF_UNIX, stream | libc::SOCK_CLOEXEC, 0),
        Socket(inet, stream | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0),
        Socket(inet, stream, libc::IPPROTO_TCP),
        Socket(inet, dgram | libc::SOCK_CLOEXEC, 0),
        Socket(inet6, dgram, libc::IPPROTO_UDP),
        Socket(inet6, stream, 0),
        Socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        ),
        Set(inet, dgram, ip, libc::IP_TOS as i64, int(0xb8)),
        Set(inet6, dgram, ipv6, libc::IPV6_TCLASS as i64, int(0xb8)),
        Set(inet6, dgram, ipv6, libc::IPV6_RECVTCLASS as i64, int(1)),
        Set(inet6, dgram, ipv6, libc::IPV6_V6ONLY as i64, int(1)),
        Set(inet6, dgram, ipv6, libc::IPV6_RECVPKTINFO as i64, int(1)),
        Set(inet6, dgram, ipv6, 70, int(1)), // IPV6_AUTOFLOWLABEL
        Set(inet6, dgram, ipv6, 78, int(1)), // IPV6_FREEBIND
        Set(
            inet,
            dgram,
            ip,
            libc::IP_MTU_DISCOVER as i64,
            int(libc::IP_PMTUDISC_DO),
        ),
        Set(inet, dgram, ip, libc::IP_PKTINFO as i64, int(1)),
        Set(inet, dgram, ip, libc::IP_RECVERR as i64, int(1)),
        Set(inet, dgram, ip, libc::IP_MULTICAST_TTL as i64, int(1)),
        Set(inet, dgram, ip, 24, int(1)), // IP_BIND_ADDRESS_NO_PORT
        Set(
            inet,
            dgram,
            libc::SOL_SOCKET as i64,
            libc::SO_RCVBUF as i64,
            int(1 << 16),
        ),
        Set(
            inet,
            stream,
            libc::IPPROTO_TCP as i64,
            libc::TCP_NODELAY as i64,
            int(1),
        ),
        Set(
            inet,
            stream,
            libc::IPPROTO_TCP as i64,
            libc::TCP_KEEPIDLE as i64,
            int(30),
        ),
        Get(inet, dgram, libc::SOL_SOCKET as i64, libc::SO_ERROR as i64),
        Get(inet, dgram, ip, libc::IP_TOS as i64),
        Get(inet6, dgram, ipv6, libc::IPV6_TCLASS as i64),
    ];
    let probes: Vec<Probe> = refused.iter().chain(&allowed).copied().collect();
    let filter = compile_with_libseccomp(&SeccompProfile::load());
    let without = probe_under(None, &probes);
    let under = probe_under(Some(&filter), &probes);
    assert_eq!(without.len(), probes.len() + 1);
    assert_eq!(under.len(), probes.len() + 1);
    assert_eq!(
        (without[0], under[0]),
        (0, 0),
        "unshare(CLONE_NEWUSER | CLONE_NEWNET) failed: this machine needs unprivileged user \
         namespaces (as the bots' nodes do)"
    );
    let strerror = |e: i32| std::io::Error::from_raw_os_error(e % PROBE_SOCKET_FAILED);
    for (i, p) in refused.iter().enumerate() {
        let (w, u) = (without[i + 1], under[i + 1]);
        assert!(
            w != libc::EPERM && w < PROBE_SOCKET_FAILED,
            "{p:?} without the filter: {} (the probe means nothing if the kernel refuses it)",
            strerror(w)
        );
        assert_eq!(u, libc::EPERM, "{p:?} under the profile: {}", strerror(u));
    }
    for (i, p) in allowed.iter().enumerate() {
        let u = under[refused.len() + i + 1];
        assert_eq!(u, 0, "{p:?} under the profile: {}", strerror(u));
    }
}
