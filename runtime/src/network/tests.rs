//! The task-network orchestration against a recording fake host: setup order, rollback on
//! failure, idempotent teardown, repair, and refusals that leave nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex as StdMutex;

use async_trait::async_trait;

use super::host::{HostOps, VethPlan};
use super::netlink::IfPlan;
use super::netlink::{HostLink, IfAddress, LinkKind};
use super::nft::NftRule;
use super::*;

#[derive(Debug, Default)]
struct World {
    calls: Vec<String>,
    fail: Option<&'static str>,
    addresses: Vec<IfAddress>,
    netns: BTreeSet<String>,
    veths: BTreeMap<String, String>,
    rules: Vec<NftRule>,
    next_handle: u64,
    host_macs: BTreeMap<[u8; 6], String>,
    ns_macs: BTreeMap<[u8; 6], String>,
    forwarding: bool,
    /// What `host_link` answers, by name (an unused plain interface otherwise).
    host_links: BTreeMap<String, HostLink>,
    /// Every nft script applied, in order.
    scripts: Vec<String>,
    /// The plan of every ENI moved in, in order.
    eni_plans: Vec<IfPlan>,
}

#[derive(Debug, Default)]
struct Fake(StdMutex<World>);

impl Fake {
    fn step(&self, name: &'static str, detail: &str) -> Result<(), NetworkError> {
        let mut w = self.0.lock().unwrap();
        w.calls.push(format!("{name} {detail}").trim().to_owned());
        if w.fail == Some(name) {
            return Err(NetworkError::Nft {
                namespace: "fake".to_owned(),
                message: format!("{name} told to fail"),
            });
        }
        Ok(())
    }

    fn world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    fn leftovers(&self) -> (usize, usize, usize, usize) {
        self.world(|w| (w.netns.len(), w.veths.len(), w.rules.len(), w.ns_macs.len()))
    }
}

#[async_trait]
impl HostOps for Fake {
    async fn host_addresses(&self) -> Result<Vec<IfAddress>, NetworkError> {
        self.step("host_addresses", "")?;
        Ok(self.world(|w| w.addresses.clone()))
    }
    async fn ensure_bridge(&self, b: &str, c: &Ipv4Cidr, _: u32) -> Result<(), NetworkError> {
        self.step("ensure_bridge", &format!("{b} {c}"))
    }
    async fn ip_forwarding(&self) -> Result<bool, NetworkError> {
        Ok(self.world(|w| w.forwarding))
    }
    async fn nft_apply(&self, script: String) -> Result<(), NetworkError> {
        self.step("nft_apply", "")?;
        self.world(|w| {
            w.scripts.push(script.clone());
            for line in script.lines() {
                if let Some(h) = line.strip_prefix("delete rule ip berth ports handle ") {
                    let h: u64 = h.parse().unwrap();
                    w.rules.retain(|r| r.handle != h);
                } else if line.starts_with("add rule ip berth ports ") {
                    w.next_handle += 1;
                    let comment = line
                        .rsplit_once("comment ")
                        .map(|(_, c)| c.trim_matches('"').to_owned());
                    w.rules.push(NftRule {
                        handle: w.next_handle,
                        comment,
                    });
                }
            }
        });
        Ok(())
    }
    async fn nft_rules(&self) -> Result<Vec<NftRule>, NetworkError> {
        Ok(self.world(|w| w.rules.clone()))
    }
    async fn create_netns(&self, name: &str) -> Result<NetNs, NetworkError> {
        self.step("create_netns", name)?;
        self.world(|w| w.netns.insert(name.to_owned()));
        Ok(NetNs::open(format!("/fake/{name}")))
    }
    async fn delete_netns(&self, name: &str) -> Result<(), NetworkError> {
        self.step("delete_netns", name)?;
        self.world(|w| w.netns.remove(name));
        Ok(())
    }
    async fn list_netns(&self) -> Result<Vec<String>, NetworkError> {
        Ok(self.world(|w| w.netns.iter().cloned().collect()))
    }
    async fn add_veth(&self, plan: &VethPlan, _: &NetNs) -> Result<(), NetworkError> {
        // The pair exists before configuring it fails: a half-made task.
        self.world(|w| w.veths.insert(plan.host_if.clone(), plan.task.clone()));
        self.step(
            "add_veth",
            &format!("{} {}", plan.task, plan.interface.address),
        )
    }
    async fn delete_link(&self, name: &str) -> Result<(), NetworkError> {
        self.step("delete_link", name)?;
        self.world(|w| w.veths.remove(name));
        Ok(())
    }
    async fn task_veths(&self) -> Result<Vec<(String, String)>, NetworkError> {
        Ok(self.world(|w| w.veths.clone().into_iter().collect()))
    }
    async fn find_mac(&self, mac: &[u8; 6]) -> Result<Option<String>, NetworkError> {
        Ok(self.world(|w| w.host_macs.get(mac).cloned()))
    }
    async fn host_link(&self, name: &str) -> Result<HostLink, NetworkError> {
        Ok(self
            .world(|w| w.host_links.get(name).cloned())
            .unwrap_or(HostLink {
                name: name.to_owned(),
                kind: LinkKind::Other,
                alias: None,
                addresses: Vec::new(),
                default_route: false,
            }))
    }
    async fn eni_in(&self, host_name: &str, plan: &IfPlan, _: &NetNs) -> Result<(), NetworkError> {
        self.step("eni_in", host_name)?;
        self.world(|w| {
            w.eni_plans.push(plan.clone());
            let mac = *w.host_macs.iter().find(|(_, n)| *n == host_name).unwrap().0;
            w.host_macs.remove(&mac);
            w.ns_macs.insert(mac, host_name.to_owned());
        });
        Ok(())
    }
    async fn eni_out(&self, mac: &[u8; 6], host_name: &str, _: &NetNs) -> Result<(), NetworkError> {
        self.step("eni_out", host_name)?;
        self.world(|w| {
            if w.ns_macs.remove(mac).is_some() {
                w.host_macs.insert(*mac, host_name.to_owned());
            }
        });
        Ok(())
    }
    fn port_free(&self, _: Protocol, port: u16) -> bool {
        port != 49153
    }
}

struct Setup {
    fake: Arc<Fake>,
    net: Network,
    _dir: tempfile::TempDir,
}

async fn open_with(fake: Arc<Fake>, dir: tempfile::TempDir) -> Result<Setup, NetworkError> {
    let mut config = NetworkConfig::new("10.213.0.0/24".parse().unwrap(), dir.path());
    config.ephemeral_ports = 49153..=49160;
    let net = Network::with_ops(config, fake.clone()).await?;
    Ok(Setup {
        fake,
        net,
        _dir: dir,
    })
}

async fn open() -> Setup {
    open_with(Arc::default(), tempfile::tempdir().unwrap())
        .await
        .unwrap()
}

fn spec(task: &str) -> TaskNetworkSpec {
    TaskNetworkSpec {
        task: task.to_owned(),
        interface: TaskInterface::Veth,
        ports: vec![
            PortRequest {
                protocol: Protocol::Tcp,
                host_port: 8080,
                container_port: 80,
            },
            PortRequest {
                protocol: Protocol::Udp,
                host_port: 0,
                container_port: 53,
            },
        ],
        dns: DnsConfig {
            hostname: "web".to_owned(),
            ..DnsConfig::default()
        },
    }
}

fn eni_spec(task: &str) -> TaskNetworkSpec {
    TaskNetworkSpec {
        task: task.to_owned(),
        interface: TaskInterface::Eni {
            mac: "02:00:00:00:00:01".parse().unwrap(),
            address: "172.31.5.10".parse().unwrap(),
            prefix_len: 24,
            gateway: "172.31.5.1".parse().unwrap(),
        },
        ports: vec![],
        dns: DnsConfig {
            hostname: "eni".to_owned(),
            ..DnsConfig::default()
        },
    }
}

#[tokio::test]
async fn setup_then_teardown_leaves_nothing() {
    let s = open().await;
    let net = s.net.setup(&spec("t1")).await.unwrap();
    assert_eq!(net.address, Ipv4Addr::new(10, 213, 0, 2));
    assert_eq!(net.gateway, Ipv4Addr::new(10, 213, 0, 1));
    assert_eq!(net.interface, "eth0");
    assert_eq!(net.ports[0].host_port, 8080);
    assert_eq!(net.ports[1].host_port, 49154, "49153 is in use on the host");
    assert!(net.files.hosts.exists());
    assert_eq!(s.fake.leftovers(), (1, 1, 2, 0));
    let calls = s.fake.world(|w| w.calls.clone());
    assert_eq!(
        calls,
        [
            "host_addresses",
            "ensure_bridge berth0 10.213.0.0/24",
            "nft_apply",
            "create_netns t1",
            "add_veth t1 10.213.0.2",
            "nft_apply"
        ]
    );
    // Setting up again is idempotent.
    let again = s.net.setup(&spec("t1")).await.unwrap();
    assert_eq!(again.address, net.address);
    assert_eq!(again.ports, net.ports);
    assert_eq!(s.fake.leftovers(), (1, 1, 2, 0));

    s.net.teardown("t1").await.unwrap();
    s.net.teardown("t1").await.unwrap();
    assert_eq!(s.fake.leftovers(), (0, 0, 0, 0));
    assert!(!net.files.hosts.exists());
    assert!(s.net.state.lock().await.tasks.is_empty());
    assert_eq!(
        ipam::load(&s.net.state_path).unwrap().tasks.len(),
        0,
        "released on disk too"
    );
}

#[tokio::test]
async fn failure_mid_setup_rolls_everything_back() {
    let s = open().await;
    s.fake.world(|w| w.fail = Some("add_veth"));
    let e = s.net.setup(&spec("t1")).await.unwrap_err();
    assert!(e.to_string().contains("add_veth told to fail"), "{e}");
    assert_eq!(s.fake.leftovers(), (0, 0, 0, 0));
    assert!(s.net.state.lock().await.tasks.is_empty());
    s.fake.world(|w| w.fail = None);
    assert_eq!(
        s.net.setup(&spec("t2")).await.unwrap().ports[0].host_port,
        8080,
        "the failed task's port is free again"
    );
}

#[tokio::test]
async fn allocations_survive_a_restart() {
    let s = open().await;
    let first = s.net.setup(&spec("t1")).await.unwrap();
    let Setup { fake, _dir, .. } = s;
    let s = open_with(fake, _dir).await.unwrap();
    assert_eq!(
        s.net.setup(&spec("t1")).await.unwrap().address,
        first.address
    );
    let other = s.net.setup(&spec("t2").clone()).await;
    assert!(
        matches!(other, Err(NetworkError::PortTaken { port: 8080, .. })),
        "{other:?}"
    );
}

#[tokio::test]
async fn cidr_overlapping_a_host_address_is_refused_before_touching_anything() {
    let fake = Arc::new(Fake::default());
    fake.world(|w| {
        w.addresses.push(IfAddress {
            interface: "eth9".to_owned(),
            address: "10.213.0.77".parse().unwrap(),
            prefix_len: 16,
        })
    });
    let e = open_with(fake.clone(), tempfile::tempdir().unwrap())
        .await
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "cidr 10.213.0.0/24 overlaps address 10.213.0.77/16 on host interface eth9: choose a range no host interface uses"
    );
    assert_eq!(fake.world(|w| w.calls.clone()), ["host_addresses"]);
}

#[tokio::test]
async fn repair_removes_only_dead_tasks() {
    let s = open().await;
    s.net.setup(&spec("live")).await.unwrap();
    s.net.setup(&spec("dead").clone()).await.err();
    let mut dead = spec("dead");
    dead.ports.clear();
    s.net.setup(&dead).await.unwrap();
    // A half-made task the state never heard of: a namespace and a veth.
    s.fake.world(|w| {
        w.netns.insert("ghost".to_owned());
        w.veths.insert("bvghost".to_owned(), "ghost".to_owned());
    });
    let live = BTreeSet::from(["live".to_owned()]);
    let repaired = s.net.repair(&live).await.unwrap();
    assert_eq!(repaired, ["dead", "ghost"]);
    s.fake.world(|w| {
        assert_eq!(w.netns, BTreeSet::from(["live".to_owned()]));
        assert_eq!(w.veths.values().collect::<Vec<_>>(), ["live"]);
        assert!(w.rules.iter().all(|r| r.comment.as_deref() == Some("live")));
    });
    assert_eq!(s.net.repair(&live).await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn eni_moves_in_and_back() {
    let s = open().await;
    let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
    s.fake
        .world(|w| w.host_macs.insert(mac.0, "ens5".to_owned()));
    let net = s.net.setup(&eni_spec("e1")).await.unwrap();
    assert_eq!(net.address, Ipv4Addr::new(172, 31, 5, 10));
    assert_eq!(s.fake.world(|w| w.ns_macs.len()), 1);
    s.net.setup(&eni_spec("e1")).await.unwrap();
    s.net.teardown("e1").await.unwrap();
    s.fake.world(|w| {
        assert_eq!(w.host_macs.get(&mac.0).map(String::as_str), Some("ens5"));
        assert!(w.ns_macs.is_empty());
        assert!(w.netns.is_empty());
    });
}

#[tokio::test]
async fn bad_inputs_are_refused_and_leave_nothing() {
    let s = open().await;
    let e = s.net.setup(&eni_spec("e1")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "no host interface has mac address 02:00:00:00:00:01: check the eni attachment"
    );
    let mut bad = spec("t1");
    bad.ports[0].container_port = 70000;
    let e = s.net.setup(&bad).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid container port \"70000\": use a port between 1 and 65535"
    );
    let mut bad = spec("t1");
    bad.ports[0].host_port = 65536;
    assert!(s.net.setup(&bad).await.is_err());
    let e = s.net.setup(&spec("../etc")).await.unwrap_err();
    assert!(matches!(e, NetworkError::InvalidTaskName { .. }), "{e}");
    let mut bad = eni_spec("e2");
    bad.ports = spec("x").ports;
    assert!(s.net.setup(&bad).await.is_err());
    assert_eq!(s.fake.leftovers(), (0, 0, 0, 0));
    assert!(s.net.state.lock().await.tasks.is_empty());
}

#[test]
fn veth_names_fit_ifnamsiz_and_mac_parses() {
    assert!(veth_name(&"x".repeat(200)).len() <= 15);
    assert_ne!(veth_name("a"), veth_name("b"));
    let mac: MacAddr = "0A:1b:2c:3d:4e:5f".parse().unwrap();
    assert_eq!(mac.to_string(), "0a:1b:2c:3d:4e:5f");
    for bad in [
        "0a:1b:2c:3d:4e",
        "0a:1b:2c:3d:4e:5f:00",
        "0a-1b-2c-3d-4e-5f",
        "zz:1b:2c:3d:4e:5f",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
    }
}

#[tokio::test]
async fn each_task_sends_only_as_itself_and_the_set_is_rebuilt_at_start() {
    let s = open().await;
    s.net.setup(&spec("t1")).await.unwrap();
    let element = format!("\"{}\" . 02:42:0a:d5:00:02 . 10.213.0.2", veth_name("t1"));
    let last = s.fake.world(|w| w.scripts.last().cloned().unwrap());
    assert!(
        last.starts_with(&format!("add element bridge berth tasks {{ {element} }}\n")),
        "{last}"
    );
    let Setup { fake, _dir, .. } = s;
    let s = open_with(fake, _dir).await.unwrap();
    let base = s.fake.world(|w| w.scripts.last().cloned().unwrap());
    assert!(
        base.contains(&format!(
            "flush set bridge berth tasks\nadd element bridge berth tasks {{ {element} }}\n"
        )),
        "{base}"
    );
    s.net.teardown("t1").await.unwrap();
    let last = s.fake.world(|w| w.scripts.last().cloned().unwrap());
    assert!(
        last.contains(&format!(
            "delete element bridge berth tasks {{ {element} }}\n"
        )),
        "{last}"
    );
}

#[tokio::test]
async fn berth_forwards_nothing_else_only_when_it_turned_forwarding_on() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    fake.world(|w| w.forwarding = true);
    let s = open_with(fake, dir).await.unwrap();
    let base = s.fake.world(|w| w.scripts[0].clone());
    assert!(
        !base.contains("forward drop"),
        "another router's traffic stays"
    );

    let s = open().await;
    let base = s.fake.world(|w| w.scripts[0].clone());
    assert!(base.contains("add rule ip berth forward drop\n"), "{base}");
    // Restarted, the agent finds forwarding on, and remembers it was its own doing.
    let Setup { fake, _dir, .. } = s;
    fake.world(|w| w.forwarding = true);
    let s = open_with(fake, _dir).await.unwrap();
    let base = s.fake.world(|w| w.scripts.last().cloned().unwrap());
    assert!(base.contains("add rule ip berth forward drop\n"), "{base}");
}

#[tokio::test]
async fn blocked_destinations_are_replaced_in_one_script() {
    let s = open().await;
    s.net
        .block_destinations(&["192.0.2.7:7700".parse().unwrap()])
        .await
        .unwrap();
    let last = s.fake.world(|w| w.scripts.last().cloned().unwrap());
    assert_eq!(
        last,
        "flush set ip berth blocked\nflush set ip berth blocked_local_ports\n\
         add element ip berth blocked { 192.0.2.7 . 7700 }\n"
    );
}

#[tokio::test]
async fn an_eni_the_host_uses_is_refused_before_anything_is_made() {
    let s = open().await;
    let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
    s.fake.world(|w| {
        w.host_macs.insert(mac.0, "ens5".to_owned());
        w.host_links.insert(
            "ens5".to_owned(),
            HostLink {
                name: "ens5".to_owned(),
                kind: LinkKind::Other,
                alias: None,
                addresses: vec!["172.31.0.10".parse().unwrap()],
                default_route: true,
            },
        );
    });
    let e = s.net.setup(&eni_spec("e1")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "refusing to move host interface ens5 (02:00:00:00:00:01) into task e1: it carries the host's default route"
    );
    assert_eq!(s.fake.leftovers(), (0, 0, 0, 0));
    assert!(s.net.state.lock().await.tasks.is_empty());
    assert_eq!(s.fake.world(|w| w.host_macs.len()), 1, "still on the host");
}

/// An ENI's traffic leaves past the host's forward path, so the instance metadata service is
/// refused by routes in the task's namespace, unless the agent lets tasks reach it.
#[tokio::test]
async fn an_eni_task_gets_the_metadata_routes_unless_the_agent_allows_it() {
    for block in [true, false] {
        let fake = Arc::new(Fake::default());
        let dir = tempfile::tempdir().unwrap();
        let mut config = NetworkConfig::new("10.213.0.0/24".parse().unwrap(), dir.path());
        config.block_instance_metadata = block;
        let net = Network::with_ops(config, fake.clone()).await.unwrap();
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        fake.world(|w| w.host_macs.insert(mac.0, "ens6".to_owned()));
        net.setup(&eni_spec("e1")).await.unwrap();
        let plans = fake.world(|w| w.eni_plans.clone());
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].block_instance_metadata, block, "{plans:?}");
    }
}
