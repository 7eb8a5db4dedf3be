//! The node driver and transport under madsim (build with `--cfg madsim`):
//! three members on simulated hosts elect a leader, replicate a write,
//! and carry on after the leader's host is killed. Guards that the driver
//! uses only APIs madsim simulates (TCP, timers, spawn, channels), so the
//! simulator runs the code that ships.

#![cfg(madsim)]

use std::net::IpAddr;
use std::time::Duration;

use cairn_core::kv::{PutRequest, RangeRequest};
use cairn_server::node::{start, InitialMember, MemoryDisk, NodeConfig, NodeHandle, StartMode};
use madsim::runtime::{Handle, NodeHandle as HostHandle};

/// Simulated time allowed for each wait.
const WAIT: Duration = Duration::from_secs(30);

struct Host {
    host: HostHandle,
    handle: NodeHandle,
}

async fn start_cluster(size: usize) -> Vec<Host> {
    let runtime = Handle::current();
    let ips: Vec<String> = (1..=size).map(|i| format!("10.0.0.{i}")).collect();
    let initial: Vec<InitialMember> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| InitialMember {
            name: format!("node-{i}"),
            peer_urls: vec![format!("http://{ip}:2380")],
        })
        .collect();
    let mut hosts = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let config = NodeConfig::new(
            format!("node-{i}"),
            "sim-cluster",
            initial.clone(),
            StartMode::New,
            format!("http://{ip}:2380"),
            vec![format!("http://{ip}:2379")],
            format!("/data/node-{i}"),
        )
        .unwrap();
        let host = runtime
            .create_node()
            .name(format!("node-{i}"))
            .ip(ip.parse::<IpAddr>().unwrap())
            .build();
        let disk = MemoryDisk::new();
        let started = host
            .spawn(async move {
                let (store, recovery) = disk.open();
                let (handle, task) = start(config, Box::new(store), recovery).await.unwrap();
                // Keep the driver's task owned by this host.
                madsim::task::spawn(async move {
                    let _ = task.wait().await;
                });
                handle
            })
            .await
            .unwrap();
        hosts.push(Host {
            host,
            handle: started,
        });
    }
    hosts
}

async fn wait_for_leader(hosts: &[Host], alive: &[usize]) -> usize {
    let poll = async {
        loop {
            for &i in alive {
                if let Ok(status) = hosts[i].handle.status().await {
                    if status.leader == status.header.member_id {
                        return i;
                    }
                }
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
    };
    madsim::time::timeout(WAIT, poll)
        .await
        .expect("a leader in time")
}

async fn put_until_ok(handle: &NodeHandle, key: &str, value: &str) {
    let attempt = async {
        loop {
            let request = PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..PutRequest::default()
            };
            if handle.put(request).await.is_ok() {
                return;
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
    };
    madsim::time::timeout(WAIT, attempt)
        .await
        .expect("a put in time");
}

async fn read(handle: &NodeHandle, key: &str) -> Option<Vec<u8>> {
    let request = RangeRequest {
        key: key.as_bytes().to_vec(),
        ..RangeRequest::default()
    };
    let (_, response) = handle.range(request).await.ok()?;
    response.kvs.first().map(|kv| kv.value.clone())
}

#[madsim::test]
async fn three_simulated_members_replicate_and_survive_the_leader() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let hosts = start_cluster(3).await;
    let leader = wait_for_leader(&hosts, &[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    put_until_ok(&hosts[follower].handle, "k", "v1").await;
    for host in &hosts {
        assert_eq!(
            read(&host.handle, "k").await.as_deref(),
            Some(b"v1".as_slice())
        );
    }

    Handle::current().kill(hosts[leader].host.id());
    let alive: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = wait_for_leader(&hosts, &alive).await;
    assert_ne!(new_leader, leader);
    put_until_ok(&hosts[new_leader].handle, "k", "v2").await;
    for &i in &alive {
        assert_eq!(
            read(&hosts[i].handle, "k").await.as_deref(),
            Some(b"v2".as_slice())
        );
    }
}
