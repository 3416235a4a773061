//! Pod IPs: loopback addresses a runtime hands out, one per pod.

use std::net::{IpAddr, Ipv4Addr};

use weir_api::k8s_openapi::api::core::v1::Container;

/// The runtime's node address, where its `NodePort` and `LoadBalancer`
/// Services listen (as a minikube node's IP): 127.0.X.Y chosen from the
/// state dir, so it is the same across restarts and differs between
/// runtimes sharing the machine (never 127.0.0.0 or 127.0.0.1, which other
/// programs use, nor a `.255`).
pub fn node_ip(state_dir: &std::path::Path) -> IpAddr {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    state_dir.hash(&mut hasher);
    let n = (hasher.finish() % (254 * 256)) as u32 + 2;
    let (x, y) = ((n >> 8) as u8, n as u8);
    let y = if y == 0 || y == 255 { 2 } else { y };
    IpAddr::V4(Ipv4Addr::new(127, 0, x, y))
}

/// Pod IPs come from 127.1.0.0–127.254.255.255 (never 127.0.0.0/16).
pub const POD_IP_SPACE: u32 = 254 << 16;

/// The next pod IP on which every port the container declares is free:
/// several runtimes (and other programs) share the loopback, so a
/// runtime starts at a random place and skips addresses in use.
pub fn allocate_ip(next: &mut u32, container: &Container) -> IpAddr {
    let ports: Vec<u16> = container
        .ports
        .iter()
        .flatten()
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    for _ in 0..1024 {
        *next = (*next + 1) % POD_IP_SPACE;
        let n = *next;
        let ip = IpAddr::V4(Ipv4Addr::new(
            127,
            1 + (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
        ));
        if (n & 0xff) == 0 || (n & 0xff) == 0xff {
            continue;
        }
        if ports
            .iter()
            .all(|&p| std::net::TcpListener::bind((ip, p)).is_ok())
        {
            return ip;
        }
    }
    IpAddr::V4(Ipv4Addr::new(127, 1, 0, 2))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;

    #[test]
    fn a_node_ip_is_the_state_dirs_own_and_never_a_shared_address() {
        let a = node_ip(Path::new("/home/me/.local/state/weir"));
        assert_eq!(a, node_ip(Path::new("/home/me/.local/state/weir")));
        let ips: HashSet<IpAddr> = (0..200)
            .map(|i| node_ip(Path::new(&format!("/tmp/weir-test-{i}"))))
            .collect();
        assert!(
            ips.len() > 190,
            "state dirs spread over addresses: {}",
            ips.len()
        );
        for ip in ips {
            let IpAddr::V4(v4) = ip else {
                panic!("{ip} is not IPv4")
            };
            let [a, b, _, d] = v4.octets();
            assert_eq!((a, b), (127, 0), "{ip}");
            assert!(
                ip != IpAddr::V4(Ipv4Addr::LOCALHOST) && d != 0 && d != 255,
                "{ip}"
            );
        }
    }
}
