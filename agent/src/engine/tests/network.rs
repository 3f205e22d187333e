//! Network modes: awsvpc (one namespace, veth or ENI), bridge (one per container, ports and
//! links), host, and the namespaces released before STOPPED or repaired after a restart.

use super::*;

#[tokio::test]
async fn a_namespace_set_up_beside_a_failed_pull_is_torn_down() {
    let h = start();
    h.fake.fail_pull_of("127.0.0.1:5000/missing:1");
    h.assign(with_mode(
        assignment("t4n", &[("app", true, "127.0.0.1:5000/missing:1")]),
        "awsvpc",
    ))
    .await;
    until_released(&h.store, "t4n").await;
    let calls = h.fake.calls();
    let pos = |c: &str| calls.iter().position(|x| x == c);
    let (Some(setup), Some(teardown)) = (pos("netns setup t4n"), pos("netns teardown t4n")) else {
        panic!("the namespace was not set up and torn down: {calls:?}");
    };
    assert!(setup < teardown, "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("create")));
    h.cancel.cancel();
}

#[tokio::test]
async fn an_unknown_network_mode_fails_the_task_by_name() {
    let h = start();
    let mut a = assignment("t7", &[("app", true, "img:1")]);
    if let Some(d) = a.definition.as_mut() {
        d.network_mode = "overlay".into();
    }
    h.assign(a).await;
    let stopped = until(&h.store, "t7", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert!(
        stopped.stopped_reason.contains("\"overlay\" is not known"),
        "{}",
        stopped.stopped_reason
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn an_awsvpc_task_shares_one_namespace_set_up_before_create_and_released_before_stopped() {
    let h = start();
    let a = with_mode(
        assignment("ta", &[("app", true, "img:1"), ("side", false, "img:1")]),
        "awsvpc",
    );
    let running = h.run(a).await;
    let att = &running.attachments;
    assert_eq!(att.len(), 1, "{att:?}");
    assert_eq!(att[0].private_ipv4_address, "10.0.0.2");
    assert_eq!(att[0].mac_address, "02:42:0a:00:00:02");
    assert_eq!(att[0].subnet, "10.0.0.0/24");
    assert_eq!(att[0].gateway, "10.0.0.1");
    let specs = h.fake.specs.lock().unwrap().clone();
    for spec in &specs {
        assert_eq!(
            spec.network,
            berth_runtime::NetworkNamespace::Join("/fake/netns/ta".into())
        );
        for (file, target) in [("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf")] {
            assert!(
                spec.mounts.iter().any(|m| m.destination == target
                    && m.read_only
                    && m.source == PathBuf::from("/fake/files/ta").join(file)),
                "{:?}",
                spec.mounts
            );
        }
        assert_eq!(spec.hostname.as_deref(), Some("ta"));
    }
    let net = h.fake.net_specs.lock().unwrap()[0].clone();
    assert_eq!(net.task, "ta");
    assert_eq!(net.interface, berth_runtime::TaskInterface::Veth);
    assert_eq!(
        net.dns.servers,
        vec!["10.0.0.53".parse::<std::net::IpAddr>().unwrap()]
    );
    stop_task(&h, "ta", 2).await;
    let calls = h.fake.calls();
    let pos = |c: &str| {
        calls
            .iter()
            .position(|x| x.starts_with(c))
            .unwrap_or(usize::MAX)
    };
    assert!(pos("netns setup ta") < pos("create"), "{calls:?}");
    // Released once every container has exited, before STOPPED; the containers go later.
    assert!(pos("stop ta.side") < pos("netns teardown ta"), "{calls:?}");
    assert!(pos("netns teardown ta") < pos("delete"), "{calls:?}");
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("netns teardown"))
            .count(),
        1
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn an_awsvpc_task_gets_the_eni_of_its_assignment() {
    let h = start();
    let eni = berth_proto::v1::NetworkAttachment {
        mac_address: "0a:58:0a:01:00:05".into(),
        private_ipv4_address: "10.1.0.5".into(),
        subnet: "10.1.0.0/24".into(),
        gateway: "10.1.0.1".into(),
        ..Default::default()
    };
    let mut a = with_mode(assignment("te", &[("app", true, "img:1")]), "awsvpc");
    a.network_attachment = Some(eni.clone());
    h.run(a).await;
    let net = h.fake.net_specs.lock().unwrap()[0].clone();
    assert_eq!(
        net.interface,
        berth_runtime::TaskInterface::Eni {
            mac: "0a:58:0a:01:00:05".parse().unwrap(),
            address: "10.1.0.5".parse().unwrap(),
            prefix_len: 24,
            gateway: "10.1.0.1".parse().unwrap(),
        }
    );
    let mut bad = with_mode(assignment("tf", &[("app", true, "img:1")]), "awsvpc");
    bad.network_attachment = Some(berth_proto::v1::NetworkAttachment {
        mac_address: "0a:58:0a:01:00:06".into(),
        private_ipv4_address: "10.2.0.5".into(),
        ..eni
    });
    h.assign(bad).await;
    let stopped = until(&h.store, "tf", TaskStatus::Stopped).await;
    assert!(
        stopped
            .stopped_reason
            .contains("10.2.0.5 is not in subnet 10.1.0.0/24"),
        "{}",
        stopped.stopped_reason
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn bridge_mode_gives_each_container_a_namespace_ports_and_links() {
    let h = start();
    let mut a = with_mode(
        assignment(
            "tb",
            &[
                ("web", true, "img:1"),
                ("db", false, "img:1"),
                ("job", false, "img:1"),
            ],
        ),
        "",
    );
    if let Some(d) = a.definition.as_mut() {
        d.containers[0].port_mappings = vec![
            berth_proto::v1::PortMapping {
                container_port: 80,
                host_port: 0,
                protocol: "tcp".into(),
            },
            berth_proto::v1::PortMapping {
                container_port: 53,
                host_port: 5353,
                protocol: "udp".into(),
            },
        ];
        d.containers[0].links = vec!["db:database".into()];
        d.containers[2].disable_networking = true;
    }
    let running = h.run(a).await;
    assert!(running.attachments.is_empty());
    let web = &running.containers[0];
    assert_eq!(web.private_ipv4_address, "10.0.0.2");
    let bound: Vec<_> = web
        .network_bindings
        .iter()
        .map(|b| {
            (
                b.host_port,
                b.container_port,
                b.protocol.as_str(),
                b.bind_ip.as_str(),
            )
        })
        .collect();
    assert_eq!(
        bound,
        [(49153, 80, "tcp", "0.0.0.0"), (5353, 53, "udp", "0.0.0.0")]
    );
    assert_eq!(running.containers[1].private_ipv4_address, "10.0.0.3");
    assert_eq!(running.containers[2].private_ipv4_address, "");
    let specs = h.fake.specs.lock().unwrap().clone();
    let net_of = |name: &str| {
        specs
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .network
            .clone()
    };
    use berth_runtime::NetworkNamespace;
    assert_eq!(
        net_of("web"),
        NetworkNamespace::Join("/fake/netns/tb.0".into())
    );
    assert_eq!(
        net_of("db"),
        NetworkNamespace::Join("/fake/netns/tb.1".into())
    );
    assert_eq!(net_of("job"), NetworkNamespace::New, "disableNetworking");
    let links = h
        .fake
        .net_files
        .lock()
        .unwrap()
        .get("tb.0")
        .cloned()
        .unwrap();
    let ip: std::net::IpAddr = "10.0.0.3".parse().unwrap();
    assert_eq!(
        links.extra_hosts,
        vec![("database".to_owned(), ip), ("db".to_owned(), ip)]
    );
    stop_task(&h, "tb", 2).await;
    let calls = h.fake.calls();
    let teardowns: Vec<_> = calls
        .iter()
        .filter(|c| c.starts_with("netns teardown"))
        .collect();
    assert_eq!(teardowns, ["netns teardown tb.0", "netns teardown tb.1"]);
    h.cancel.cancel();
}

#[tokio::test]
async fn host_mode_reports_its_ports_and_sets_up_no_namespace() {
    let h = start();
    let mut a = with_mode(assignment("th", &[("app", true, "img:1")]), "host");
    if let Some(d) = a.definition.as_mut() {
        d.containers[0].port_mappings = vec![berth_proto::v1::PortMapping {
            container_port: 8080,
            host_port: 8080,
            protocol: "tcp".into(),
        }];
    }
    let running = h.run(a).await;
    assert_eq!(running.containers[0].network_bindings.len(), 1);
    assert_eq!(running.containers[0].network_bindings[0].host_port, 8080);
    assert_eq!(
        h.fake.specs.lock().unwrap()[0].network,
        berth_runtime::NetworkNamespace::Host
    );
    stop_task(&h, "th", 2).await;
    assert!(
        !h.fake
            .calls()
            .iter()
            .any(|c| c.starts_with("netns setup") || c.starts_with("netns teardown"))
    );
    h.cancel.cancel();
}

#[tokio::test]
async fn a_restart_repairs_the_network_of_all_but_the_stored_tasks() {
    let dir = stored_as_stopped(&with_mode(
        assignment("tr", &[("app", true, "img:1")]),
        "awsvpc",
    ));
    let h = start_on(dir, Vec::new(), false);
    until_released(&h.store, "tr").await;
    let calls = h.fake.calls();
    let pos = |c: &str| calls.iter().position(|x| x == c).unwrap_or(usize::MAX);
    assert!(
        pos("netns repair [tr]") < pos("netns teardown tr"),
        "the stored task's namespace is live at repair, then torn down by its cleanup: {calls:?}"
    );
    h.cancel.cancel();
}
