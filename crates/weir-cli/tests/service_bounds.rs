//! Service listeners under pressure, as an attacker or a busy machine
//! would put them: a port another process holds, and ten thousand idle
//! connections against a runtime's descriptor limit. Real `weir up`, real
//! sockets.

mod support;

use std::process::Command;
use std::time::Duration;

use support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_port_held_by_another_process_is_reported_and_the_rest_are_served() {
    let cluster = Cluster::up(&[]);
    let dir = tempfile::tempdir().unwrap();
    let service = |name: &str, node_port: Option<u16>| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: NodePort\n  selector: {{app: nothing}}\n  ports:\n  - port: 80\n{}",
            node_port.map_or(String::new(), |p| format!("    nodePort: {p}\n"))
        )
    };
    // Where the node listens, from a first Service's URL.
    std::fs::write(dir.path().join("first.yaml"), service("first", None)).unwrap();
    cluster.apply_ok(&dir.path().join("first.yaml"));
    let url = cluster.weir(&["service", "first", "--url"]);
    let url = String::from_utf8_lossy(&url.stdout).trim().to_owned();
    let node = url
        .trim_start_matches("http://")
        .rsplit_once(':')
        .map(|(ip, _)| ip.to_owned())
        .unwrap_or_else(|| panic!("no node address in {url:?}"));
    // Another process holds one node port.
    let held = std::net::TcpListener::bind(format!("{node}:30777")).unwrap();
    std::fs::write(
        dir.path().join("more.yaml"),
        format!(
            "{}---\n{}",
            service("blocked", Some(30777)),
            service("other", Some(30778))
        ),
    )
    .unwrap();
    cluster.apply_ok(&dir.path().join("more.yaml"));
    let describe = cluster.weir(&["describe", "service", "blocked"]);
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(
        text.contains("FailedToBind") && text.contains("can't open port 80"),
        "{text}"
    );
    // Every other Service port is served.
    std::net::TcpStream::connect(format!("{node}:30778")).expect("other's node port is served");
    drop(held);
}

/// Holds `n` idle TCP connections to `addr` from a process of its own
/// (its open-files limit raised to what it may): returns it once they are
/// open, with how many opened; they close when it is killed.
fn hold_idle_connections(addr: &str, n: usize) -> (std::process::Child, usize) {
    use std::io::BufRead;
    let script = format!(
        "import resource, socket, sys\nsoft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\nresource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))\nhost, port = '{}'.rsplit(':', 1)\nheld = []\nfor _ in range({n}):\n    try:\n        held.append(socket.create_connection((host, int(port)), timeout=5))\n    except OSError:\n        pass\nprint(len(held), flush=True)\nsys.stdin.read()\n",
        addr
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().parse().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_to_a_node_port_do_not_starve_the_node() {
    // 20,000 descriptors (where the node went down): 5,000 in
    // reserve, 7,500 proxied connections at most, 3,750 at one address.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let cluster = Cluster::up_under(
        &["prlimit", "--nofile=20000:20000"],
        &["--metrics", &metrics],
    );
    cluster.walkthrough_ready().await;
    let dir = tempfile::tempdir().unwrap();
    let edge = dir.path().join("edge.yaml");
    std::fs::write(
        &edge,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: edge\nspec:\n  type: NodePort\n  selector: {app: my-app}\n  ports:\n  - port: 80\n    targetPort: http\n",
    )
    .unwrap();
    cluster.apply_ok(&edge);
    let url = cluster.weir(&["service", "edge", "--url"]);
    let url = String::from_utf8_lossy(&url.stdout).trim().to_owned();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    // The pods serving before the connections are held. (The HPAs may add
    // more under the load: a new pod is not ready for its first seconds,
    // which is not a probe failing.)
    let serving: Vec<String> = cluster
        .json("pods")
        .iter()
        .filter(|pod| pod["status"]["containerStatuses"][0]["ready"] == true)
        .filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    assert!(serving.len() >= 2, "{serving:?}");
    let (mut holder, opened) = hold_idle_connections(&addr, 10_000);
    assert!(opened > 5_000, "the client opened {opened}");
    // The listener refuses beyond its cap, and counts what it refused.
    let refused = |_: &Cluster| -> f64 {
        let text = std::process::Command::new("curl")
            .args(["-s", &format!("http://{metrics}/metrics")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with("weir_service_connections_refused_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    cluster
        .wait_for(
            "connections refused at the cap",
            Duration::from_secs(30),
            |c| refused(c) > 0.0,
        )
        .await;
    // With them held: the gateway answers every request, the runtime keeps
    // descriptors to spare, and no pod failed a probe.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answers = support::load_until(cluster.addr(), &stop, 300);
    assert_eq!(answers.ok, 300, "{answers:?}");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", cluster.child_pid()))
        .unwrap()
        .count();
    assert!(
        fds < 20_000 - 4_000,
        "weir up holds {fds} of 20,000 descriptors"
    );
    let pods = cluster.json("pods");
    for pod in &pods {
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["restartCount"], 0, "{pod}");
    }
    for name in &serving {
        let pod = pods
            .iter()
            .find(|pod| pod["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} is gone: {pods:?}"));
        assert_eq!(
            pod["status"]["containerStatuses"][0]["ready"], true,
            "{pod}"
        );
    }
    let _ = holder.kill();
    let _ = holder.wait();
}
