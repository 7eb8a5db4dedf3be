//! Guards leases as etcdctl drives them: grant (TTL raised to the server's
//! minimum, refused above the maximum), put --lease, keep-alive --once,
//! timetolive --keys, list, revoke (which deletes the attached keys),
//! expiry (keys disappear on their own, not before the TTL), and etcd's
//! "requested lease not found" error for every use of an unknown lease.

use std::thread;
use std::time::{Duration, Instant};

use cairn_tests::{wait_until, Cluster, Etcdctl};

/// Bound on an expired lease's keys disappearing (TTL plus election slack).
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the keep-alive test renews its lease.
const RENEW_INTERVAL: Duration = Duration::from_millis(500);
/// How long the keep-alive test keeps renewing a 3 s lease: twice its TTL.
const RENEW_WINDOW: Duration = Duration::from_secs(6);
/// A 3 s lease must not expire sooner than this (TTL minus clock slack).
const EXPIRY_LIFETIME_MIN: Duration = Duration::from_secs(2);

/// Grants a lease and returns its id as etcdctl prints it (16 hex digits).
fn grant(etcdctl: &Etcdctl, ttl_seconds: u64) -> String {
    let output = etcdctl
        .run(&["lease", "grant", &ttl_seconds.to_string()])
        .expect_success();
    let words: Vec<&str> = output.stdout.split_whitespace().collect();
    assert!(
        words.len() == 5 && words[0] == "lease" && words[2] == "granted",
        "unexpected grant output:\n{output}"
    );
    let id = words[1].to_owned();
    assert_eq!(id.len(), 16, "lease ids print as 16 hex digits:\n{output}");
    assert_ne!(id, "0000000000000000", "lease ids are non-zero");
    id
}

fn lease_number(hex: &str) -> i64 {
    u64::from_str_radix(hex, 16).unwrap_or_else(|error| panic!("lease id {hex}: {error}")) as i64
}

#[test]
fn grant_attach_keep_alive_time_to_live_and_revoke() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    let output = etcdctl.run(&["lease", "grant", "100"]).expect_success();
    assert!(
        output.stdout.ends_with(" granted with TTL(100s)\n"),
        "{output}"
    );
    let id = output
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();

    etcdctl
        .run(&["put", "leased/1", "a", &format!("--lease={id}")])
        .expect_success();
    etcdctl
        .run(&["put", "leased/2", "b", &format!("--lease={id}")])
        .expect_success();
    etcdctl.put("unleased", "c");
    let reply = etcdctl.get(&["leased/", "--prefix"]);
    assert!(
        reply.kvs.iter().all(|kv| kv.lease == lease_number(&id)),
        "{reply:?}"
    );
    assert_eq!(etcdctl.get(&["unleased"]).kvs[0].lease, 0);

    let kept = etcdctl
        .run(&["lease", "keep-alive", "--once", &id])
        .expect_success();
    assert_eq!(
        kept.stdout,
        format!("lease {id} keepalived with TTL(100)\n")
    );

    let time_to_live = etcdctl
        .run(&["lease", "timetolive", "--keys", &id])
        .expect_success();
    assert!(
        time_to_live
            .stdout
            .starts_with(&format!("lease {id} granted with TTL(100s), remaining(")),
        "{time_to_live}"
    );
    // etcd lists attached keys in no particular order.
    let attached = time_to_live
        .stdout
        .split_once("attached keys([")
        .and_then(|(_, rest)| rest.strip_suffix("])\n"))
        .unwrap_or_else(|| panic!("no attached keys list:\n{time_to_live}"));
    let mut attached: Vec<&str> = attached.split(' ').collect();
    attached.sort_unstable();
    assert_eq!(attached, ["leased/1", "leased/2"], "{time_to_live}");
    let json = etcdctl
        .run(&["lease", "timetolive", "--keys", &id, "-w", "json"])
        .expect_success();
    let status = json.json();
    assert_eq!(status["id"].as_i64(), Some(lease_number(&id)), "{json}");
    assert_eq!(status["granted-ttl"].as_i64(), Some(100), "{json}");
    let remaining = status["ttl"].as_i64().unwrap_or(-1);
    assert!(
        (1..=100).contains(&remaining),
        "remaining TTL {remaining} not in 1..=100:\n{json}"
    );
    let mut keys: Vec<String> = status["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .map(|key| {
                    String::from_utf8(cairn_tests::decode_base64(key.as_str().unwrap_or("")))
                        .expect("UTF-8 key")
                })
                .collect()
        })
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(keys, ["leased/1", "leased/2"], "{json}");

    let listed = etcdctl.run(&["lease", "list"]).expect_success();
    assert!(listed.stdout_lines().contains(&id.as_str()), "{listed}");

    let revoked = etcdctl.run(&["lease", "revoke", &id]).expect_success();
    assert_eq!(revoked.stdout, format!("lease {id} revoked\n"));
    assert!(
        etcdctl.get(&["leased/", "--prefix"]).kvs.is_empty(),
        "revoke deletes attached keys"
    );
    assert_eq!(etcdctl.value("unleased").as_deref(), Some("c"));

    let expired = etcdctl.run(&["lease", "timetolive", &id]).expect_success();
    assert_eq!(expired.stdout, format!("lease {id} already expired\n"));
    etcdctl
        .run(&["lease", "revoke", &id])
        .expect_failure()
        .expect_stderr_contains("etcdserver: requested lease not found");
    etcdctl
        .run(&["lease", "keep-alive", "--once", &id])
        .expect_failure()
        .expect_stderr_contains("etcdserver: requested lease not found");
    etcdctl
        .run(&["put", "late", "x", &format!("--lease={id}")])
        .expect_failure()
        .expect_stderr_contains("etcdserver: requested lease not found");
    assert_eq!(etcdctl.value("late"), None);
}

#[test]
fn keys_disappear_when_their_lease_expires() {
    let cluster = Cluster::start(3);
    let etcdctl = cluster.etcdctl_for(1);
    let granted_at = Instant::now();
    let id = grant(&etcdctl, 3);
    etcdctl
        .run(&["put", "ephemeral", "soon gone", &format!("--lease={id}")])
        .expect_success();
    assert_eq!(etcdctl.value("ephemeral").as_deref(), Some("soon gone"));

    let other = cluster.etcdctl_for(2);
    wait_until("the leased key expires", EXPIRY_TIMEOUT, || {
        other.value("ephemeral").is_none().then_some(())
    });
    let lifetime = granted_at.elapsed();
    assert!(
        lifetime >= EXPIRY_LIFETIME_MIN,
        "a 3 s lease expired after only {lifetime:?}"
    );
    let expired = etcdctl.run(&["lease", "timetolive", &id]).expect_success();
    assert_eq!(expired.stdout, format!("lease {id} already expired\n"));
}

#[test]
fn keep_alive_extends_a_lease_past_its_ttl() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    let id = grant(&etcdctl, 3);
    etcdctl
        .run(&["put", "renewed", "still here", &format!("--lease={id}")])
        .expect_success();
    // Renew for twice the TTL; the key must survive throughout.
    let renew_until = Instant::now() + RENEW_WINDOW;
    while Instant::now() < renew_until {
        let renewed_at = Instant::now();
        etcdctl
            .run(&["lease", "keep-alive", "--once", &id])
            .expect_success();
        let value = etcdctl.value("renewed");
        assert_eq!(value.as_deref(), Some("still here"), "lease {id} lapsed");
        thread::sleep(RENEW_INTERVAL.saturating_sub(renewed_at.elapsed()));
    }
    // Once renewals stop, the lease runs out.
    wait_until("the lease lapses without renewals", EXPIRY_TIMEOUT, || {
        etcdctl.value("renewed").is_none().then_some(())
    });
}

#[test]
fn short_ttl_is_raised_to_the_minimum() {
    // etcd's minimum TTL is ceil(1.5 × election timeout): 2 s for 1,000 ms.
    let cluster = Cluster::start(1);
    let output = cluster
        .etcdctl()
        .run(&["lease", "grant", "1"])
        .expect_success();
    assert!(
        output.stdout.ends_with(" granted with TTL(2s)\n"),
        "{output}"
    );
}

#[test]
fn an_oversized_ttl_is_refused() {
    // etcd's maximum lease TTL is 9,000,000,000 s.
    let cluster = Cluster::start(1);
    cluster
        .etcdctl()
        .run(&["lease", "grant", "99999999999"])
        .expect_failure()
        .expect_stderr_contains("etcdserver: too large lease TTL");
}
