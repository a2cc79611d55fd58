//! Bots as Kubernetes Jobs (batch/v1), through the kube crate: one Job per bot job, named after
//! it (so a second create is a 409 and starts nothing), `backoffLimit: 0` (a crashed bot is not
//! restarted by Kubernetes: the launch consumer decides), `activeDeadlineSeconds` = the meeting's
//! maximum length, `ttlSecondsAfterFinished`, labels for tenant/meeting/job, the job passed by id
//! in the arguments, and the bot's ticket (decision 0032) in a Secret made for that Job alone, as
//! `MEETBOT_BOT_TICKET`. The Job is created suspended, its ticket Secret is created owned by it
//! (so it goes when the Job goes), then the Job is resumed: the launcher only ever creates
//! Secrets, never reads, changes or deletes one. No other Secret reaches a bot unless an
//! operator names one in `env_from_secrets`.
//!
//! A Job's state comes from its conditions (`Complete`, `Failed` with the reason, e.g.
//! `DeadlineExceeded`) and, while it has not started, from its pods' waiting reasons
//! (`ErrImagePull`, `ImagePullBackOff`, `CreateContainerConfigError`, ...), so a bot that cannot
//! start is reported as failed instead of waiting for its deadline.

use crate::launcher::{BotLauncher, BotRun, LaunchError, LaunchSpec};
use async_trait::async_trait;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    EnvVarSource, Pod, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, Secret, SecretEnvSource, SecretKeySelector, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;

pub const APP_LABEL: &str = "app.kubernetes.io/name";
pub const APP: &str = "meetbot-bot";
pub const TENANT_LABEL: &str = "meetbot.io/tenant";
pub const MEETING_LABEL: &str = "meetbot.io/meeting";
pub const JOB_LABEL: &str = "meetbot.io/job";

/// Pod waiting reasons that mean the bot will not start without a change by an operator.
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What every bot Job is made from.
#[derive(Clone, Debug)]
pub struct JobTemplate {
    pub namespace: String,
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub service_account: Option<String>,
    /// Arguments before `--tenant T --job ID`; default `["bot"]` (the `meetbot` image's entrypoint).
    pub args: Vec<String>,
    /// Secrets and ConfigMaps whose keys become the bot's environment (by reference only).
    pub env_from_secrets: Vec<String>,
    pub env_from_config_maps: Vec<String>,
    pub cpu_request: Option<String>,
    pub memory_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
    pub ttl_seconds_after_finished: i32,
    /// The node-local seccomp profile the bot runs under (relative to the kubelet's seccomp
    /// directory; installed by infra/kubernetes/node-seccomp): meetbot's own allow-list
    /// (infra/kubernetes/seccomp/chromium-sandbox.json, decision 0034), not the runtime's default.
    /// It refuses what it does not name, allows the user, PID and network namespaces Chromium's
    /// sandbox makes (`clone`/`unshare` without mount, cgroup, UTS, IPC or time namespaces;
    /// `clone3` answers ENOSYS), and limits sockets to Unix, route netlink, TCP and UDP and socket
    /// options to the levels they use (no raw sockets, no netfilter tables).
    pub seccomp_profile: String,
}

/// The default [`JobTemplate::seccomp_profile`].
pub const CHROMIUM_SECCOMP_PROFILE: &str = "meetbot/chromium-sandbox.json";

impl JobTemplate {
    pub fn new(namespace: &str, image: &str) -> Self {
        JobTemplate {
            namespace: namespace.into(),
            image: image.into(),
            image_pull_policy: None,
            service_account: None,
            args: vec!["bot".into()],
            env_from_secrets: vec![],
            env_from_config_maps: vec![],
            cpu_request: Some("250m".into()),
            memory_request: Some("256Mi".into()),
            cpu_limit: Some("1".into()),
            memory_limit: Some("512Mi".into()),
            ttl_seconds_after_finished: 3600,
            seccomp_profile: CHROMIUM_SECCOMP_PROFILE.into(),
        }
    }
}

impl JobTemplate {
    /// The template `[launcher.kubernetes]` describes (unset resources keep the defaults).
    pub fn from_config(k: &meetbot_core::config::KubernetesLauncherConfig) -> Self {
        let mut t = JobTemplate::new(&k.namespace, &k.image);
        t.image_pull_policy = k.image_pull_policy.clone();
        t.service_account = k.service_account.clone();
        t.env_from_secrets = k.env_from_secrets.clone();
        t.env_from_config_maps = k.env_from_config_maps.clone();
        for (dst, src) in [
            (&mut t.cpu_request, &k.cpu_request),
            (&mut t.memory_request, &k.memory_request),
            (&mut t.cpu_limit, &k.cpu_limit),
            (&mut t.memory_limit, &k.memory_limit),
        ] {
            if src.is_some() {
                *dst = src.clone();
            }
        }
        if let Some(ttl) = k.ttl_seconds_after_finished {
            t.ttl_seconds_after_finished = ttl;
        }
        t
    }
}

/// The Job name of a bot job: `meetbot-bot-<job id>`, lower-case, at most 63 characters.
pub fn job_name(job_id: &str) -> String {
    let id: String = job_id
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut name = format!("{APP}-{id}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// A label value: at most 63 of `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
fn label_value(v: &str) -> String {
    let mut s: String = v
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(63);
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The key of the bot's ticket in its Secret.
pub const TICKET_KEY: &str = "ticket";

/// The name of the Secret holding `spec`'s ticket: the Job's name and a digest of the ticket,
/// so a relaunch's ticket never meets its predecessor's Secret (collected after the old Job).
pub fn ticket_secret_name(spec: &LaunchSpec) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spec.ticket.expose().as_bytes());
    let hex: String = d.as_ref()[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-t{hex}", job_name(&spec.job_id))
}

/// The Secret holding `spec`'s ticket, owned by the Job `owner_uid`: labelled like its Job,
/// immutable.
pub fn ticket_secret(t: &JobTemplate, spec: &LaunchSpec, job: &str, owner_uid: &str) -> Secret {
    let labels = BTreeMap::from([
        (APP_LABEL.to_string(), APP.to_string()),
        (TENANT_LABEL.to_string(), label_value(spec.tenant.as_str())),
        (MEETING_LABEL.to_string(), label_value(&spec.meeting_id)),
        (JOB_LABEL.to_string(), label_value(&spec.job_id)),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(ticket_secret_name(spec)),
            namespace: Some(t.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: job.into(),
                uid: owner_uid.into(),
                controller: Some(false),
                block_owner_deletion: Some(false),
            }]),
            ..Default::default()
        },
        immutable: Some(true),
        string_data: Some(BTreeMap::from([(
            TICKET_KEY.to_string(),
            spec.ticket.expose().to_string(),
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The Job manifest for `spec`.
pub fn manifest(t: &JobTemplate, spec: &LaunchSpec) -> Job {
    let labels = BTreeMap::from([
        (APP_LABEL.to_string(), APP.to_string()),
        (TENANT_LABEL.to_string(), label_value(spec.tenant.as_str())),
        (MEETING_LABEL.to_string(), label_value(&spec.meeting_id)),
        (JOB_LABEL.to_string(), label_value(&spec.job_id)),
    ]);
    let mut args = t.args.clone();
    args.extend([
        "--tenant".into(),
        spec.tenant.to_string(),
        "--job".into(),
        spec.job_id.clone(),
    ]);
    let q = |v: &Option<String>| v.clone().map(Quantity);
    let pairs = |cpu: &Option<String>, mem: &Option<String>| {
        let mut m = BTreeMap::new();
        if let Some(c) = q(cpu) {
            m.insert("cpu".to_string(), c);
        }
        if let Some(x) = q(mem) {
            m.insert("memory".to_string(), x);
        }
        (!m.is_empty()).then_some(m)
    };
    let env_from: Vec<EnvFromSource> = t
        .env_from_secrets
        .iter()
        .map(|s| EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: s.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        })
        .chain(t.env_from_config_maps.iter().map(|c| EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: c.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }))
        .collect();
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&spec.job_id)),
            namespace: Some(t.namespace.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // Resumed once its ticket Secret exists (see `KubernetesLauncher::launch`).
            suspend: Some(true),
            backoff_limit: Some(0),
            active_deadline_seconds: Some(spec.max_duration.as_secs().max(1) as i64),
            ttl_seconds_after_finished: Some(t.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: t.service_account.clone(),
                    // A bot needs no Kubernetes API token, whatever its service account.
                    automount_service_account_token: Some(false),
                    containers: vec![Container {
                        name: "bot".into(),
                        image: Some(t.image.clone()),
                        image_pull_policy: t.image_pull_policy.clone(),
                        args: Some(args),
                        env: Some(vec![EnvVar {
                            name: crate::ticket::TICKET_ENV.into(),
                            value_from: Some(EnvVarSource {
                                secret_key_ref: Some(SecretKeySelector {
                                    name: ticket_secret_name(spec),
                                    key: TICKET_KEY.into(),
                                    optional: Some(false),
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                        env_from: (!env_from.is_empty()).then_some(env_from),
                        resources: Some(ResourceRequirements {
                            requests: pairs(&t.cpu_request, &t.memory_request),
                            limits: pairs(&t.cpu_limit, &t.memory_limit),
                            ..Default::default()
                        }),
                        // Read-only image; the only writable place is /tmp in memory (the
                        // browser connector's Chromium profile), so nothing reaches a disk.
                        security_context: Some(SecurityContext {
                            read_only_root_filesystem: Some(true),
                            allow_privilege_escalation: Some(false),
                            run_as_non_root: Some(true),
                            capabilities: Some(Capabilities {
                                drop: Some(vec!["ALL".into()]),
                                ..Default::default()
                            }),
                            // Chromium's sandbox is on (it renders third-party pages): it
                            // needs user namespaces, which the runtime's default seccomp
                            // profile refuses; this profile (decision 0034) permits them, within an allow-list of its own.
                            seccomp_profile: Some(SeccompProfile {
                                type_: "Localhost".into(),
                                localhost_profile: Some(t.seccomp_profile.clone()),
                            }),
                            ..Default::default()
                        }),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "tmp".into(),
                            mount_path: "/tmp".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(10001),
                        run_as_group: Some(10001),
                        ..Default::default()
                    }),
                    volumes: Some(vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            medium: Some("Memory".into()),
                            size_limit: Some(Quantity("256Mi".into())),
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub struct KubernetesLauncher {
    jobs: Api<Job>,
    pods: Api<Pod>,
    secrets: Api<Secret>,
    template: JobTemplate,
    describe: String,
}

fn classify(e: kube::Error) -> LaunchError {
    match e {
        kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 429 => {
            LaunchError::Refused(format!("{} {}: {}", s.code, s.reason, s.message))
        }
        kube::Error::Api(s) => {
            LaunchError::Unavailable(format!("{} {}: {}", s.code, s.reason, s.message))
        }
        other => LaunchError::Unavailable(other.to_string()),
    }
}

impl KubernetesLauncher {
    /// Bots in `template.namespace` through `client` (in-cluster or kubeconfig credentials).
    pub fn new(client: kube::Client, template: JobTemplate) -> Self {
        let describe = format!(
            "Kubernetes Jobs in namespace {} (image {})",
            template.namespace, template.image
        );
        KubernetesLauncher {
            jobs: Api::namespaced(client.clone(), &template.namespace),
            pods: Api::namespaced(client.clone(), &template.namespace),
            secrets: Api::namespaced(client, &template.namespace),
            template,
            describe,
        }
    }

    /// Why the job's pod cannot start, if it is stuck.
    async fn stuck_reason(&self, name: &str) -> Result<Option<String>, LaunchError> {
        let pods = self
            .pods
            .list(&ListParams::default().labels(&format!("job-name={name}")))
            .await
            .map_err(classify)?;
        for p in pods.items {
            let statuses = p
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default();
            for c in statuses {
                if let Some(w) = c.state.and_then(|s| s.waiting)
                    && let Some(r) = w.reason
                    && STUCK.contains(&r.as_str())
                {
                    return Ok(Some(format!(
                        "the bot could not start: {r}{}",
                        w.message.map(|m| format!(" ({m})")).unwrap_or_default()
                    )));
                }
            }
        }
        Ok(None)
    }
}

fn run_of(job: &Job) -> BotRun {
    let status = job.status.clone().unwrap_or_default();
    for c in status.conditions.unwrap_or_default() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" | "SuccessCriteriaMet" => return BotRun::Succeeded,
            "Failed" | "FailureTarget" => {
                return BotRun::Failed(format!(
                    "{}{}",
                    c.reason.unwrap_or_else(|| "Failed".into()),
                    c.message.map(|m| format!(": {m}")).unwrap_or_default()
                ));
            }
            _ => {}
        }
    }
    // `active` counts pending pods too; only a ready pod means the bot runs.
    if status.ready.unwrap_or(0) > 0 {
        BotRun::Running
    } else {
        BotRun::Starting
    }
}

#[async_trait]
impl BotLauncher for KubernetesLauncher {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<(), LaunchError> {
        let name = job_name(&spec.job_id);
        // A Job of the same bot job that will not run its bot (finished, stuck, or left
        // suspended by a launcher that died before resuming it) is removed first (a relaunch);
        // one that runs or starts is this bot.
        let mut replaced = false;
        if let Some(old) = self.jobs.get_opt(&name).await.map_err(classify)? {
            let suspended = old.spec.as_ref().and_then(|s| s.suspend) == Some(true);
            if !run_of(&old).is_finished()
                && !suspended
                && self.stuck_reason(&name).await?.is_none()
            {
                return Ok(());
            }
            self.jobs
                .delete(&name, &DeleteParams::background())
                .await
                .map_err(classify)?;
            replaced = true;
        }
        // Suspended until its ticket exists; the ticket's Secret belongs to the Job, so it is
        // collected with it; then resumed. A step that fails takes the Job away again.
        let job = match self
            .jobs
            .create(&PostParams::default(), &manifest(&self.template, spec))
            .await
        {
            Ok(j) => j,
            // The old Job is still being removed: try again later.
            Err(kube::Error::Api(s)) if s.code == 409 && replaced => {
                return Err(LaunchError::Unavailable(
                    "the previous bot's Job is still being removed".into(),
                ));
            }
            // Created meanwhile by another consumer: one bot, as wanted.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) => return Err(classify(e)),
        };
        let uid = job.metadata.uid.unwrap_or_default();
        let started = async {
            self.secrets
                .create(
                    &PostParams::default(),
                    &ticket_secret(&self.template, spec, &name, &uid),
                )
                .await?;
            let resume = serde_json::json!({"spec": {"suspend": false}});
            self.jobs
                .patch(&name, &PatchParams::default(), &Patch::Merge(&resume))
                .await
        }
        .await;
        if let Err(e) = started {
            let _ = self.jobs.delete(&name, &DeleteParams::background()).await;
            return Err(classify(e));
        }
        Ok(())
    }

    async fn state(&self, job_id: &str) -> Result<BotRun, LaunchError> {
        let name = job_name(job_id);
        let Some(job) = self.jobs.get_opt(&name).await.map_err(classify)? else {
            return Ok(BotRun::NotFound);
        };
        let run = run_of(&job);
        if matches!(run, BotRun::Starting)
            && let Some(reason) = self.stuck_reason(&name).await?
        {
            return Ok(BotRun::Failed(reason));
        }
        Ok(run)
    }

    /// Deletes the Job; its pod and its ticket Secret go with it (background propagation).
    async fn stop(&self, job_id: &str) -> Result<bool, LaunchError> {
        match self
            .jobs
            .delete(&job_name(job_id), &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }

    async fn active(&self) -> Result<usize, LaunchError> {
        let list = self
            .jobs
            .list(&ListParams::default().labels(&format!("{APP_LABEL}={APP}")))
            .await
            .map_err(classify)?;
        Ok(list
            .items
            .iter()
            .filter(|j| !run_of(j).is_finished())
            .count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            tenant: "clinic01".parse().unwrap(),
            job_id: "0b0e6a7c-94a5-4c52-9a43-4b1f4a7b1e11".into(),
            meeting_id: "5f6a1b2c-0000-4000-8000-000000000001".into(),
            max_duration: Duration::from_secs(4 * 3600),
            ticket: crate::ticket::EncodedTicket::new("ticket-text".into()),
        }
    }

    /// The one variable a bot's container sets: its ticket, from its own Secret.
    fn ticket_only(s: &LaunchSpec) -> serde_json::Value {
        serde_json::json!([{
            "name": "MEETBOT_BOT_TICKET",
            "valueFrom": {"secretKeyRef": {
                "name": ticket_secret_name(s),
                "key": "ticket",
                "optional": false
            }}
        }])
    }

    #[test]
    fn manifest_follows_the_template_and_passes_only_ids_and_secret_references() {
        let mut t = JobTemplate::new("meetbot", "registry.example/meetbot:1.2.3");
        t.service_account = Some("meetbot-bot".into());
        t.env_from_secrets = vec!["meetbot-bot-secrets".into()];
        let job = manifest(&t, &spec());
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(
            v["metadata"]["name"],
            "meetbot-bot-0b0e6a7c-94a5-4c52-9a43-4b1f4a7b1e11"
        );
        assert_eq!(v["spec"]["backoffLimit"], 0);
        assert_eq!(v["spec"]["activeDeadlineSeconds"], 14400);
        assert_eq!(v["spec"]["ttlSecondsAfterFinished"], 3600);
        assert_eq!(v["metadata"]["labels"][TENANT_LABEL], "clinic01");
        assert_eq!(
            v["spec"]["template"]["metadata"]["labels"][JOB_LABEL],
            "0b0e6a7c-94a5-4c52-9a43-4b1f4a7b1e11"
        );
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["serviceAccountName"], "meetbot-bot");
        let c = &pod["containers"][0];
        assert_eq!(
            c["args"],
            serde_json::json!([
                "bot",
                "--tenant",
                "clinic01",
                "--job",
                "0b0e6a7c-94a5-4c52-9a43-4b1f4a7b1e11"
            ])
        );
        assert_eq!(c["envFrom"][0]["secretRef"]["name"], "meetbot-bot-secrets");
        assert_eq!(
            c["env"],
            ticket_only(&spec()),
            "no inline environment values"
        );
        assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    }

    #[test]
    fn a_bot_job_runs_chromium_sandboxed_non_root_and_holds_no_literal_credentials() {
        let mut t = JobTemplate::new("meetbot", "registry.example/meetbot:1.2.3");
        t.env_from_secrets = vec!["meetbot-bot-secrets".into()];
        t.env_from_config_maps = vec!["meetbot-config".into()];
        let v = serde_json::to_value(manifest(&t, &spec())).unwrap();
        let pod = &v["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["seccompProfile"]["type"], "Localhost");
        assert_eq!(
            sc["seccompProfile"]["localhostProfile"],
            CHROMIUM_SECCOMP_PROFILE
        );
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert!(sc.get("privileged").is_none_or(|p| p == false));
        assert!(sc["capabilities"].get("add").is_none());
        assert_eq!(pod["securityContext"]["runAsUser"], 10001);
        // Environment only by reference: no literal value, no secret mounted as a file; the
        // ticket from the bot's own Secret.
        assert_eq!(
            c["env"],
            ticket_only(&spec()),
            "no inline environment values"
        );
        for e in c["envFrom"].as_array().unwrap() {
            let keys: Vec<_> = e.as_object().unwrap().keys().collect();
            assert!(
                keys == ["secretRef"] || keys == ["configMapRef"],
                "{e}: only references"
            );
        }
        assert_eq!(
            c["volumeMounts"],
            serde_json::json!([{"mountPath": "/tmp", "name": "tmp"}])
        );
        for vol in pod["volumes"].as_array().unwrap() {
            assert!(vol.get("secret").is_none() && vol.get("projected").is_none());
        }
        let text = v.to_string();
        for needle in [
            "mongodb://",
            "amqp://",
            "password",
            "PASSWORD",
            "SECRET=",
            "KEY=",
        ] {
            assert!(!text.contains(needle), "{needle} in the bot's Job");
        }
    }

    #[test]
    fn job_names_are_valid_kubernetes_names_for_any_id() {
        for id in ["ABC_def", &"x".repeat(100), "a--", "ünïcode"] {
            let n = job_name(id);
            assert!(n.len() <= 63 && n.starts_with("meetbot-bot-"), "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
            assert!(!n.ends_with('-'));
        }
        assert_eq!(label_value("--x y--"), "x_y");
    }
}
