//! The runtime as a hostile local user would try it: whose the state dir
//! is, who may read it, who holds it, and whose processes get signalled.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_in_the_state_dir_is_private_whatever_the_umask() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut up = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" up --state-dir \"$1\" --port-map \"80=$2\"")
        .arg(weir_bin())
        .arg(&dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let weir = |args: &[&str]| {
        Command::new(weir_bin())
            .args(args)
            .args(["--state-dir", dir.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !weir(&["get", "pods"]).status.success() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "weir up did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        weir(&["apply", "-f", examples().to_str().unwrap()])
            .status
            .success()
    );
    let logs = dir.join("logs");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&logs).unwrap().count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no pod logs");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(mode(&dir), 0o700, "state dir");
    assert_eq!(mode(&logs), 0o700, "logs dir");
    for entry in std::fs::read_dir(&dir)
        .unwrap()
        .chain(std::fs::read_dir(&logs).unwrap())
    {
        let path = entry.unwrap().path();
        if path.is_file() || path.ends_with("admin.sock") {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    assert!(weir(&["down"]).status.success());
    let _ = up.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_weir_up_on_a_held_state_dir_exits_1_naming_the_holder() {
    let cluster = Cluster::up(&[]);
    let holder = cluster.child_pid();
    let out = Command::new(weir_bin())
        .args(["up", "--state-dir", cluster.dir.path().to_str().unwrap()])
        .args(["--port-map", "80=0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("in use by another `weir up` (pid {holder})")),
        "{stderr}"
    );
    // The first one still answers: its socket was not taken over.
    assert!(cluster.weir(&["get", "pods"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_others_may_write_to_or_another_user_owns_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let open = root.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, PermissionsExt::from_mode(0o777)).unwrap();
    let up = |dir: &std::path::Path| {
        Command::new(weir_bin())
            .args([
                "up",
                "--state-dir",
                dir.to_str().unwrap(),
                "--port-map",
                "80=0",
            ])
            .output()
            .unwrap()
    };
    let out = up(&open);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("writable by group or others"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&open).unwrap().count(),
        0,
        "nothing written there"
    );
    // Another user's dir: only root can make one to try.
    if rustix_is_root() {
        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, PermissionsExt::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let out = up(&theirs);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("belongs to uid 65534"), "{stderr}");
        assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
    }
}

fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_that_are_not_the_runtimes_pods_survive_its_restarts() {
    let mut cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    // A user's process that exported WEIR_STATE_DIR, as the README says,
    // in a process group of its own (as `setsid` or a shell job makes it).
    let mut bystander = Command::new("sleep")
        .arg("120")
        .env("WEIR_STATE_DIR", cluster.dir.path())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = bystander.id();
    cluster.kill9();
    cluster.start();
    assert!(cluster.weir(&["down"]).status.success());
    cluster.start();
    assert!(
        alive(pid),
        "a process carrying WEIR_STATE_DIR was signalled"
    );
    assert!(bystander.try_wait().unwrap().is_none());
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_map_applied_with_other_manifests_changes_nothing_for_the_walkthrough() {
    let cluster = Cluster::up(&[]);
    cluster.walkthrough_ready().await;
    // An unrelated directory whose map sends the walkthrough's image to a
    // script that leaves a mark named after the pod running it.
    let other = tempfile::tempdir().unwrap();
    let marks = other.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let evil = other.path().join("evil.sh");
    std::fs::write(
        &evil,
        format!(
            "#!/bin/sh\ntouch \"{}/$HOSTNAME\"\nexec sleep 600\n",
            marks.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        other.path().join("weir-images.conf"),
        format!(
            "containersol/k8s-deployment-strategies = {}\n",
            evil.display()
        ),
    )
    .unwrap();
    std::fs::write(
        other.path().join("other.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: other\nspec:\n  selector:\n    matchLabels: {app: other}\n  template:\n    metadata:\n      labels: {app: other}\n    spec:\n      containers:\n      - name: other\n        image: containersol/k8s-deployment-strategies\n",
    )
    .unwrap();
    cluster.apply_ok(other.path());
    cluster
        .wait_for(
            "the other deployment's pod to run the script",
            Duration::from_secs(30),
            |_| {
                std::fs::read_dir(&marks)
                    .unwrap()
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("other-"))
            },
        )
        .await;
    // A new my-app-v1 pod still runs my-app.
    let scaled = cluster.weir(&["scale", "deployment", "my-app-v1", "--replicas", "2"]);
    assert!(
        scaled.status.success(),
        "{}",
        String::from_utf8_lossy(&scaled.stderr)
    );
    cluster
        .wait_for(
            "a second my-app-v1 pod, ready",
            Duration::from_secs(30),
            |c| c.ready("my-app-v1") == 2,
        )
        .await;
    let marked: Vec<String> = std::fs::read_dir(&marks)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        marked.iter().all(|m| m.starts_with("other-")),
        "only the other deployment ran the script: {marked:?}"
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answers = load_until(cluster.addr(), &stop, 50);
    assert_eq!(answers.ok, 50, "my-app still answers: {answers:?}");
}

/// The `Uid:` and `Gid:` lines' real ids of a process and of its children.
fn ids_under(pid: u32) -> Vec<(u32, u32)> {
    let ids = |pid: &str| -> Option<(u32, u32)> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u32> {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some((field("Uid:")?, field("Gid:")?))
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .filter_map(|p| ids(&p))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_root_run_as_user_is_honoured_and_run_as_non_root_refuses_root() {
    if !rustix_is_root() {
        eprintln!("skipped: switching a pod's user needs the runtime to run as root");
        return;
    }
    let cluster = Cluster::up(&[]);
    let dir = tempfile::tempdir().unwrap();
    let deployment = |name: &str, security: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: main\n        image: busybox\n        command: [sleep, \"600\"]\n{security}"
        )
    };
    std::fs::write(
        dir.path().join("nobody.yaml"),
        deployment(
            "nobody",
            "        securityContext:\n          runAsUser: 65534\n          runAsGroup: 65534\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("nonroot.yaml"),
        deployment(
            "nonroot",
            "        securityContext:\n          runAsNonRoot: true\n",
        ),
    )
    .unwrap();
    cluster.apply_ok(dir.path());
    cluster
        .wait_for("nobody's pod", Duration::from_secs(30), |c| {
            c.json("pods").iter().any(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("nobody-"))
                    && p["status"]["containerStatuses"][0]["pid"]
                        .as_u64()
                        .is_some()
            })
        })
        .await;
    let (_, supervisor) = cluster.pod("nobody-");
    let mut container = Vec::new();
    cluster
        .wait_for("nobody's container", Duration::from_secs(10), |_| {
            container = ids_under(supervisor);
            !container.is_empty()
        })
        .await;
    assert_eq!(container, vec![(65534, 65534)], "runs as nobody:nogroup");
    // runAsNonRoot with nothing but root to run as: the pod exists and
    // waits in CreateContainerConfigError, as the kubelet leaves it; its
    // container is never started.
    let nonroot = cluster
        .json("pods")
        .into_iter()
        .find(|p| {
            p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("nonroot-"))
        })
        .expect("the nonroot pod exists");
    let waiting = &nonroot["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "CreateContainerConfigError", "{nonroot}");
    assert!(
        nonroot["status"]["containerStatuses"][0]["pid"].is_null(),
        "never started: {nonroot}"
    );
    let name = nonroot["metadata"]["name"].as_str().unwrap().to_owned();
    let describe = cluster.weir(&["describe", "pod", &name]);
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(
        text.contains("CreateContainerConfigError")
            && text.contains("Error: container has runAsNonRoot and image will run as root"),
        "{text}"
    );
    let get = cluster.weir(&["get", "pods"]);
    let text = String::from_utf8_lossy(&get.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&name) && l.contains("CreateContainerConfigError")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_runs_as_a_normal_user_with_its_privileged_port_mapped() {
    if !rustix_is_root() {
        eprintln!("skipped: the test drops to another user from root");
        return;
    }
    const NOBODY: u32 = 65534;
    let cluster = Cluster::up_as(NOBODY, &[]);
    cluster.walkthrough_ready().await;
    // The Service's port 80 at its cluster IP needs privileges nobody has:
    // served 8000 higher, and the Service's events say where.
    let describe = cluster.weir(&["describe", "service", "my-app"]);
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(
        text.contains("PortMapped") && text.contains(":8080"),
        "{text}"
    );
    // The gateway serves the walkthrough's split; the pods run as nobody.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answers = load_until(cluster.addr(), &stop, 200);
    assert_eq!(answers.ok, 200, "{answers:?}");
    assert!(answers.v2 > 0 && answers.v2 < 60, "{answers:?}");
    let (_, supervisor) = cluster.pod("my-app-v1-");
    let uid = std::fs::read_to_string(format!("/proc/{supervisor}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok());
    assert_eq!(uid, Some(NOBODY));
}
