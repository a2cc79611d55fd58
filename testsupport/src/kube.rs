//! A stand-in for the part of the Kubernetes API a bot launcher uses, following the documented
//! batch/v1 Jobs and core/v1 Pods REST API: create (`201`, `409 AlreadyExists` as a `Status`),
//! get (`404 NotFound` as a `Status`), list with an equality `labelSelector`, delete (the object
//! back, then gone). No API server can run here.
//!
//! It also plays the Job controller and kubelet, driven by the test: a created Job gets one pod
//! (`<job>-<5 chars>`, label `job-name`), `status.active = 1`; [`KubeStandIn::run`] makes it
//! ready, [`KubeStandIn::complete`] / [`KubeStandIn::fail`] set the `Complete` / `Failed`
//! conditions, and [`KubeStandIn::stuck`] leaves the pod's container waiting with a reason
//! (`ImagePullBackOff`, ...).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Cluster {
    /// (namespace, name) -> Job
    jobs: BTreeMap<(String, String), Value>,
    pods: BTreeMap<(String, String), Value>,
    /// (namespace, name) -> Secret (`data` base64, as the API server keeps it)
    secrets: BTreeMap<(String, String), Value>,
    created: Vec<Value>,
    deleted: Vec<String>,
    rv: u64,
}

pub struct KubeStandIn {
    pub addr: SocketAddr,
    c: Arc<Mutex<Cluster>>,
    _task: tokio::task::JoinHandle<()>,
}

fn status(code: u16, reason: &str, message: String, name: &str, kind: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason,
            "details": {"name": name, "group": if kind == "jobs" { "batch" } else { "" }, "kind": kind},
            "code": code
        })),
    )
        .into_response()
}

/// `a=b,c=d` (equality only, as the launcher uses).
fn matches(selector: Option<&String>, obj: &Value) -> bool {
    let Some(sel) = selector else { return true };
    sel.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        let v = v.trim_start_matches('=');
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

impl KubeStandIn {
    pub async fn start() -> Self {
        let c = Arc::new(Mutex::new(Cluster::default()));
        let app = axum::Router::new()
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs",
                get(list_jobs).post(create_job),
            )
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
                get(get_job).delete(delete_job).patch(patch_job),
            )
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .route(
                "/api/v1/namespaces/{ns}/secrets",
                axum::routing::post(create_secret),
            )
            .route(
                "/api/v1/namespaces/{ns}/secrets/{name}",
                get(get_secret).delete(delete_secret).patch(patch_secret),
            )
            .with_state(c.clone());
        let (addr, task) = crate::serve_on_loopback(app).await;
        KubeStandIn {
            addr,
            c,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this stand-in.
    pub fn client(&self) -> kube::Client {
        let cfg = kube::Config::new(self.url().parse().expect("url"));
        kube::Client::try_from(cfg).expect("kube client")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.c.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every Job manifest as it was created, in order.
    pub fn created(&self) -> Vec<Value> {
        self.lock().created.clone()
    }

    /// Names of deleted Jobs, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.lock().deleted.clone()
    }

    /// The Job `name` as the API server keeps it now, if it exists.
    pub fn job(&self, name: &str) -> Option<Value> {
        self.lock()
            .jobs
            .iter()
            .find(|((_, n), _)| n == name)
            .map(|(_, j)| j.clone())
    }

    /// The Secret `name` as the API server keeps it, if it exists.
    pub fn secret(&self, name: &str) -> Option<Value> {
        self.lock()
            .secrets
            .iter()
            .find(|((_, n), _)| n == name)
            .map(|(_, s)| s.clone())
    }

    /// Names of the Secrets that exist now.
    pub fn secret_names(&self) -> Vec<String> {
        self.lock().secrets.keys().map(|(_, n)| n.clone()).collect()
    }

    /// Names of the Jobs that exist now.
    pub fn job_names(&self) -> Vec<String> {
        self.lock().jobs.keys().map(|(_, n)| n.clone()).collect()
    }

    fn with_job(&self, name: &str, f: impl FnOnce(&mut Value, Option<&mut Value>)) {
        let mut c = self.lock();
        c.rv += 1;
        let rv = c.rv.to_string();
        let key = c.jobs.keys().find(|(_, n)| n == name).cloned();
        let Some(key) = key else { return };
        let pod_key = c
            .pods
            .iter()
            .find(|(_, p)| p["metadata"]["labels"]["job-name"] == name)
            .map(|(k, _)| k.clone());
        let mut pod = pod_key.as_ref().and_then(|k| c.pods.remove(k));
        if let Some(job) = c.jobs.get_mut(&key) {
            job["metadata"]["resourceVersion"] = json!(rv);
            f(job, pod.as_mut());
        }
        if let (Some(k), Some(p)) = (pod_key, pod) {
            c.pods.insert(k, p);
        }
    }

    /// The pod runs and is ready.
    pub fn run(&self, name: &str) {
        self.with_job(name, |job, pod| {
            job["status"]["ready"] = json!(1);
            if let Some(p) = pod {
                p["status"] = json!({"phase": "Running", "containerStatuses": [
                    {"name": "bot", "ready": true, "restartCount": 0, "image": "", "imageID": "",
                     "state": {"running": {"startedAt": Utc::now().to_rfc3339()}}}]});
            }
        });
    }

    /// The pod's container cannot start (`reason` as the kubelet reports it).
    pub fn stuck(&self, name: &str, reason: &str, message: &str) {
        self.with_job(name, |_, pod| {
            if let Some(p) = pod {
                p["status"] = json!({"phase": "Pending", "containerStatuses": [
                    {"name": "bot", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                     "state": {"waiting": {"reason": reason, "message": message}}}]});
            }
        });
    }

    fn finish(&self, name: &str, condition: &str, reason: &str, message: &str, ok: bool) {
        let now = Utc::now().to_rfc3339();
        self.with_job(name, |job, pod| {
            job["status"]["active"] = json!(0);
            job["status"]["ready"] = json!(0);
            job["status"][if ok { "succeeded" } else { "failed" }] = json!(1);
            job["status"]["conditions"] = json!([{
                "type": condition, "status": "True", "reason": reason, "message": message,
                "lastProbeTime": now, "lastTransitionTime": now
            }]);
            if ok {
                job["status"]["completionTime"] = json!(now);
            }
            if let Some(p) = pod {
                p["status"]["phase"] = json!(if ok { "Succeeded" } else { "Failed" });
            }
        });
    }

    /// The bot exited 0: condition `Complete`.
    pub fn complete(&self, name: &str) {
        self.finish(name, "Complete", "", "", true);
    }

    /// The Job failed: condition `Failed` with `reason` (e.g. `BackoffLimitExceeded`,
    /// `DeadlineExceeded`).
    pub fn fail(&self, name: &str, reason: &str, message: &str) {
        self.finish(name, "Failed", reason, message, false);
    }
}

async fn create_job(
    State(c): State<Arc<Mutex<Cluster>>>,
    Path(ns): Path<String>,
    Json(mut job): Json<Value>,
) -> Response {
    let Some(name) = job["metadata"]["name"].as_str().map(String::from) else {
        return status(
            422,
            "Invalid",
            "Job.batch \"\" is invalid: metadata.name: Required value".into(),
            "",
            "jobs",
        );
    };
    if job["spec"]["template"]["spec"]["restartPolicy"] != "Never"
        && job["spec"]["template"]["spec"]["restartPolicy"] != "OnFailure"
    {
        return status(
            422,
            "Invalid",
            format!(
                "Job.batch \"{name}\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
            ),
            &name,
            "jobs",
        );
    }
    let mut cl = c.lock().unwrap_or_else(|p| p.into_inner());
    if cl.jobs.contains_key(&(ns.clone(), name.clone())) {
        return status(
            409,
            "AlreadyExists",
            format!("jobs.batch \"{name}\" already exists"),
            &name,
            "jobs",
        );
    }
    cl.created.push(job.clone());
    cl.rv += 1;
    let uid = uuid::Uuid::new_v4().to_string();
    let now = Utc::now().to_rfc3339();
    job["apiVersion"] = json!("batch/v1");
    job["kind"] = json!("Job");
    job["metadata"]["namespace"] = json!(ns);
    job["metadata"]["uid"] = json!(uid);
    job["metadata"]["resourceVersion"] = json!(cl.rv.to_string());
    job["metadata"]["creationTimestamp"] = json!(now);
    job["status"] = json!({"active": 1, "ready": 0, "startTime": now});
    // A suspended Job (`spec.suspend`) gets its pod when it is resumed.
    if job["spec"]["suspend"] == json!(true) {
        job["status"] = json!({"active": 0, "ready": 0});
    } else {
        add_pod(&mut cl, &ns, &name, &job);
    }
    cl.jobs.insert((ns, name), job.clone());
    (StatusCode::CREATED, Json(job)).into_response()
}

/// The Job controller's pod for Job `name` (`<job>-<5 chars>`, labels `job-name`, `controller-uid`).
fn add_pod(cl: &mut Cluster, ns: &str, name: &str, job: &Value) {
    let now = Utc::now().to_rfc3339();
    let uid = job["metadata"]["uid"].clone();
    let pod_name = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..5]);
    let mut labels = job["spec"]["template"]["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["job-name"] = json!(name);
    labels["controller-uid"] = uid;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                     "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now},
        "spec": job["spec"]["template"]["spec"].clone(),
        "status": {"phase": "Pending"}
    });
    cl.pods.insert((ns.to_string(), pod_name), pod);
}

/// A JSON merge patch of the Job; resuming a suspended Job (`spec.suspend: false`) starts its
/// pod, as the Job controller does.
async fn patch_job(
    State(c): State<Arc<Mutex<Cluster>>>,
    Path((ns, name)): Path<(String, String)>,
    Json(patch): Json<Value>,
) -> Response {
    let mut cl = c.lock().unwrap_or_else(|p| p.into_inner());
    cl.rv += 1;
    let rv = cl.rv.to_string();
    let key = (ns.clone(), name.clone());
    let Some(job) = cl.jobs.get_mut(&key) else {
        return status(
            404,
            "NotFound",
            format!("jobs.batch \"{name}\" not found"),
            &name,
            "jobs",
        );
    };
    let was_suspended = job["spec"]["suspend"] == json!(true);
    if let Some(spec) = patch["spec"].as_object() {
        for (k, v) in spec {
            job["spec"][k] = v.clone();
        }
    }
    if let Some(m) = patch["metadata"].as_object() {
        for (k, v) in m {
            job["metadata"][k] = v.clone();
        }
    }
    job["metadata"]["resourceVersion"] = json!(rv);
    let resumed = was_suspended && job["spec"]["suspend"] != json!(true);
    if resumed {
        job["status"]["active"] = json!(1);
    }
    let job = job.clone();
    if resumed {
        add_pod(&mut cl, &ns, &name, &job);
    }
    Json(job).into_response()
}

async fn get_job(
    State(c): State<Arc<Mutex<Cluster>>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let cl = c.lock().unwrap_or_else(|p| p.into_inner());
    match cl.jobs.get(&(ns, name.clone())) {
        Some(j) => Json(j.clone()).into_response(),
        None => status(
            404,
            "NotFound",
            format!("jobs.batch \"{name}\" not found"),
            &name,
            "jobs",
        ),
    }
}

async fn delete_job(
    State(c): State<Arc<Mutex<Cluster>>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let mut cl = c.lock().unwrap_or_else(|p| p.into_inner());
    match cl.jobs.remove(&(ns.clone(), name.clone())) {
        Some(mut j) => {
            // Background propagation: the pods go too, and (the garbage collector) what the
            // Job owns.
            cl.pods
                .retain(|_, p| p["metadata"]["labels"]["job-name"] != name.as_str());
            let uid = j["metadata"]["uid"].clone();
            cl.secrets.retain(|_, s| {
                !s["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
            });
            cl.deleted.push(name);
            j["metadata"]["deletionTimestamp"] = json!(Utc::now().to_rfc3339());
            Json(j).into_response()
        }
        None => status(
            404,
            "NotFound",
            format!("jobs.batch \"{name}\" not found"),
            &name,
            "jobs",
        ),
    }
}

fn list(kind: &str, items: Vec<Value>, rv: u64) -> Response {
    Json(json!({
        "apiVersion": if kind == "JobList" { "batch/v1" } else { "v1" },
        "kind": kind,
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items
    }))
    .into_response()
}

async fn list_jobs(
    State(c): State<Arc<Mutex<Cluster>>>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let cl = c.lock().unwrap_or_else(|p| p.into_inner());
    list("JobList", select(&cl.jobs, &ns, &q), cl.rv)
}

async fn list_pods(
    State(c): State<Arc<Mutex<Cluster>>>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let cl = c.lock().unwrap_or_else(|p| p.into_inner());
    list("PodList", select(&cl.pods, &ns, &q), cl.rv)
}

/// The objects of namespace `ns` matching the query's `labelSelector`.
fn select(
    objs: &BTreeMap<(String, String), Value>,
    ns: &str,
    q: &HashMap<String, String>,
) -> Vec<Value> {
    objs.iter()
        .filter(|((n, _), o)| n == ns && matches(q.get("labelSelector"), o))
        .map(|(_, o)| o.clone())
        .collect()
}

fn secret_missing(name: &str) -> Response {
    status(
        404,
        "NotFound",
        format!("secrets \"{name}\" not found"),
        name,
        "secrets",
    )
}

/// `stringData` folded into `data` (base64), as the API server does.
async fn create_secret(
    State(c): State<Arc<Mutex<Cluster>>>,
    Path(ns): Path<String>,
    Json(mut secret): Json<Value>,
) -> Response {
    use base64::Engine as _;
    let Some(name) = secret["metadata"]["name"].as_str().map(String::from) else {
        return status(
            422,
            "Invalid",
            "Secret \"\" is invalid: metadata.name: Required value".into(),
            "",
            "secrets",
        );
    };
    let mut cl = c.lock().unwrap_or_else(|p| p.into_inner());
    if cl.secrets.contains_key(&(ns.clone(), name.clone())) {
        return status(
            409,
            "AlreadyExists",
            format!("secrets \"{name}\" already exists"),
            &name,
            "secrets",
        );
    }
    let mut data = secret["data"].as_object().cloned().unwrap_or_default();
    if let Some(sd) = secret["stringData"].as_object() {
        for (k, v) in sd {
            let plain = v.as_str().unwrap_or_default();
            data.insert(
                k.clone(),
                json!(base64::engine::general_purpose::STANDARD.encode(plain)),
            );
        }
    }
    if let Some(o) = secret.as_object_mut() {
        o.remove("stringData");
    }
    cl.rv += 1;
    secret["apiVersion"] = json!("v1");
    secret["kind"] = json!("Secret");
    secret["data"] = Value::Object(data);
    secret["metadata"]["namespace"] = json!(ns);
    secret["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    secret["metadata"]["resourceVersion"] = json!(cl.rv.to_string());
    cl.secrets.insert((ns, name), secret.clone());
    (StatusCode::CREATED, Json(secret)).into_response()
}

async fn get_secret(
    State(c): State<Arc<Mutex<Cluster>>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let cl = c.lock().unwrap_or_else(|p| p.into_inner());
    match cl.secrets.get(&(ns, name.clone())) {
        Some(s) => Json(s.clone()).into_response(),
        None => secret_missing(&name),
    }
}

async fn delete_secret(
    State(c): State<Arc<Mutex<Cluster>>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let mut cl = c.lock().unwrap_or_else(|p| p.into_inner());
    match cl.secrets.remove(&(ns, name.clone())) {
        Some(s) => Json(s).into_response(),
        None => secret_missing(&name),
    }
}

/// A JSON merge patch (RFC 7386) of the Secret's metadata (what the launcher patches); an
/// immutable Secret's `data` cannot change.
async fn patch_secret(
    State(c): State<Arc<Mutex<Cluster>>>,
    Path((ns, name)): Path<(String, String)>,
    Json(patch): Json<Value>,
) -> Response {
    let mut cl = c.lock().unwrap_or_else(|p| p.into_inner());
    cl.rv += 1;
    let rv = cl.rv.to_string();
    let Some(s) = cl.secrets.get_mut(&(ns, name.clone())) else {
        return secret_missing(&name);
    };
    if s["immutable"] == json!(true)
        && (patch.get("data").is_some() || patch.get("stringData").is_some())
    {
        return status(
            422,
            "Invalid",
            format!(
                "Secret \"{name}\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
            ),
            &name,
            "secrets",
        );
    }
    if let Some(m) = patch["metadata"].as_object() {
        for (k, v) in m {
            s["metadata"][k] = v.clone();
        }
    }
    s["metadata"]["resourceVersion"] = json!(rv);
    Json(s.clone()).into_response()
}
