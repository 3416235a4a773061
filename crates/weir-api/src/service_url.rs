//! `weir service NAME --url`, as `minikube service --url` answers it: one
//! URL per Service port, at a node's address and the port's node port —
//! the same on the embedded runtime (its node address) and on a cluster
//! (the first node's InternalIP).

use serde_json::Value;

/// The URLs of `service` (its JSON, node ports filled in) at the first of
/// `nodes` (node addresses); the refusal says why there is none.
pub fn service_urls(service: &Value, nodes: &[String]) -> Result<Vec<String>, String> {
    let name = service["metadata"]["name"].as_str().unwrap_or("?");
    let kind = service["spec"]["type"].as_str().unwrap_or("ClusterIP");
    let ports: Vec<u64> = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .collect();
    if ports.is_empty() {
        return Err(format!(
            "service {name} has no node port (type {kind}): only NodePort and LoadBalancer Services are reached from outside"
        ));
    }
    let Some(node) = nodes.first() else {
        return Err("no node address is known".to_owned());
    };
    let host = if node.contains(':') {
        format!("[{node}]")
    } else {
        node.clone()
    };
    Ok(ports.iter().map(|p| format!("http://{host}:{p}")).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_url_per_node_port_at_the_first_node() {
        let nodes = ["127.0.3.7".to_owned(), "10.0.0.2".to_owned()];
        let cases = [
            (json!({"metadata": {"name": "my-app"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 31234}]}}),
             &nodes[..], Ok(vec!["http://127.0.3.7:31234".to_owned()])),
            (json!({"metadata": {"name": "two"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30001}, {"port": 443, "nodePort": 30002}]}}),
             &nodes[..], Ok(vec!["http://127.0.3.7:30001".to_owned(), "http://127.0.3.7:30002".to_owned()])),
            (json!({"metadata": {"name": "v6"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30003}]}}),
             &["fd00::2".to_owned()][..], Ok(vec!["http://[fd00::2]:30003".to_owned()])),
            (json!({"metadata": {"name": "inside"}, "spec": {"ports": [{"port": 80}]}}),
             &nodes[..], Err("service inside has no node port (type ClusterIP): only NodePort and LoadBalancer Services are reached from outside".to_owned())),
            (json!({"metadata": {"name": "my-app"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 31234}]}}),
             &[][..], Err("no node address is known".to_owned())),
        ];
        for (service, nodes, expected) in cases {
            assert_eq!(service_urls(&service, nodes), expected, "{service}");
        }
    }
}
