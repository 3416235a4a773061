//! A restarting runtime binds its listeners before the slow part of its
//! start (adopting pods) and serves them once its configuration is set: a
//! client that connects in between waits in the listen backlog and gets
//! its answer, where it used to be refused. Real `my-app`, real sockets,
//! a real HTTP client.

mod support;

use std::collections::BTreeMap;

use support::*;
use weir_gateway::{Gateway, GatewayOptions};

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_client_of_a_listener_bound_ahead_is_answered_once_routes_are_set() {
    let v1 = App::start("127.0.0.1", "v1.0.0", "", &[]);
    let routes_yaml = split(100, 0);
    let apps = backends(&[(&v1, &[("version", "v1.0.0")])]);
    let docs = [GATEWAY, SUBSETS, routes_yaml.as_str(), apps.as_str()];
    let port = free_port();
    let gw = Gateway::new(GatewayOptions {
        port_map: BTreeMap::from([(80, port)]),
        ..GatewayOptions::default()
    })
    .unwrap();
    let (routes, endpoints) = inputs(&docs);
    gw.bind_ahead(&routes).await;
    assert!(
        gw.listeners().await.is_empty(),
        "bound ahead is not served yet"
    );

    // The client connects and asks now, before any route is served.
    let url = format!("http://127.0.0.1:{port}/");
    let asked = tokio::spawn(async move { get(&url, &[]).await });
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("a listener bound ahead accepts connections");

    gw.set_all(routes, endpoints).await.unwrap();
    let (status, _, body) = asked.await.unwrap();
    assert_eq!(status, http::StatusCode::OK, "{body}");
    assert_eq!(version(&body), "v1.0.0");
    assert_eq!(gw.listeners().await[&80].port(), port, "the same listener");
}

#[tokio::test]
async fn a_listener_bound_ahead_that_the_configuration_does_not_want_is_closed() {
    let port = free_port();
    let gw = Gateway::new(GatewayOptions {
        port_map: BTreeMap::from([(80, port), (81, free_port())]),
        ..GatewayOptions::default()
    })
    .unwrap();
    let (routes, _) = inputs(&[GATEWAY]);
    gw.bind_ahead(&routes).await;
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("bound ahead");
    // The configuration that comes has no Gateway on port 80 any more.
    let other = GATEWAY.replace("number: 80", "number: 81");
    let (routes, endpoints) = inputs(&[other.as_str()]);
    gw.set_all(routes, endpoints).await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "port 80's listener is closed"
    );
    assert!(gw.listeners().await.contains_key(&81));
}
