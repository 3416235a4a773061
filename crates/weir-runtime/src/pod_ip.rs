//! Pod IPs: loopback addresses a runtime hands out, one per pod.

use std::net::{IpAddr, Ipv4Addr};

use weir_api::k8s_openapi::api::core::v1::Container;

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
