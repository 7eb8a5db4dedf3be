//! Guards distributed locking as etcdctl implements it (a client-side
//! recipe over Txn compare create_revision = 0, leases and watches): two
//! contenders on different members never hold the lock at once, the waiter
//! acquires as soon as the holder releases, and a holder that dies without
//! unlocking loses the lock when its session lease expires.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use cairn_tests::{wait_until, Cluster, Etcdctl};

/// Bound on acquiring a free lock or noticing a release.
const LOCK_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on a dead holder's session lease (`--ttl=3`) running out.
const SESSION_EXPIRY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the test watches a queued waiter to make sure it stays blocked
/// while the lock is held. An observation window, not a wait for a
/// condition: a broken lock would let the waiter in during it.
const BLOCKED_OBSERVATION: Duration = Duration::from_millis(700);
/// Upper bound, in 50 ms steps, on how long the holder's shell waits for
/// its release file; it ends the shell even if the test died (30 s).
const HOLDER_POLLS_MAX: u32 = 600;

/// Number of keys under the lock's prefix: one per holder or waiter.
fn contenders(etcdctl: &Etcdctl, lock_name: &str) -> usize {
    etcdctl
        .get(&[&format!("{lock_name}/"), "--prefix"])
        .kvs
        .len()
}

#[test]
fn two_contenders_on_different_members_exclude_each_other() {
    let cluster = Cluster::start(3);
    let directory = cluster.scratch_path();
    let directory_text = directory.to_string_lossy().into_owned();
    let lock_name = "e2e-lock";

    // The holder marks its critical section with a file and stays inside
    // until the test creates the release file.
    let holder_script = format!(
        "touch \"$0/holder-a\"; echo a-acquired \"$ETCD_LOCK_KEY\"; i=0; \
         while [ ! -e \"$0/release-a\" ] && [ $i -lt {HOLDER_POLLS_MAX} ]; do \
         sleep 0.05; i=$((i+1)); done; rm \"$0/holder-a\"; echo a-released"
    );
    let mut holder = cluster.etcdctl_for(0).spawn(&[
        "lock",
        lock_name,
        "--",
        "sh",
        "-c",
        &holder_script,
        &directory_text,
    ]);
    let lines = holder.wait_for_output("the first contender acquires", LOCK_TIMEOUT, |lines| {
        lines.iter().any(|line| line.starts_with("a-acquired "))
    });
    let holder_key = lines[0].trim_start_matches("a-acquired ").to_owned();
    assert!(
        holder_key.starts_with(&format!("{lock_name}/")),
        "lock key {holder_key:?}"
    );

    // The waiter reports a violation if it ever runs inside the holder's
    // critical section.
    let waiter_script = "if [ -e \"$0/holder-a\" ]; then echo violation; fi; echo b-acquired";
    let mut waiter = cluster.etcdctl_for(2).spawn(&[
        "lock",
        lock_name,
        "--",
        "sh",
        "-c",
        waiter_script,
        &directory_text,
    ]);
    let observer = cluster.etcdctl_for(1);
    wait_until("the second contender is queued", LOCK_TIMEOUT, || {
        (contenders(&observer, lock_name) == 2).then_some(())
    });
    thread::sleep(BLOCKED_OBSERVATION);
    assert!(
        waiter.lines().is_empty(),
        "the waiter ran while the lock was held:\n{}",
        waiter.report()
    );
    assert!(
        waiter.is_running(),
        "the waiter gave up:\n{}",
        waiter.report()
    );

    fs::write(Path::new(&directory).join("release-a"), b"").expect("write the release file");
    let holder_status = holder.wait_for_exit(LOCK_TIMEOUT);
    assert!(
        holder_status.success(),
        "the holder failed:\n{}",
        holder.report()
    );
    assert_eq!(
        holder.lines().last().map(String::as_str),
        Some("a-released")
    );

    let waiter_status = waiter.wait_for_exit(LOCK_TIMEOUT);
    assert!(
        waiter_status.success(),
        "the waiter failed:\n{}",
        waiter.report()
    );
    let report = waiter.report();
    assert_eq!(
        waiter.lines(),
        ["b-acquired"],
        "mutual exclusion violated:\n{report}"
    );
    assert_eq!(
        contenders(&observer, lock_name),
        0,
        "both contenders unlocked"
    );
}

#[test]
fn a_dead_holder_loses_the_lock_when_its_session_expires() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    let lock_name = "e2e-crash-lock";

    // Without a command, etcdctl prints the lock key and holds the lock.
    let mut holder = etcdctl.spawn(&["lock", "--ttl=3", lock_name]);
    let lines = holder.wait_for_output("the holder acquires", LOCK_TIMEOUT, |lines| {
        !lines.is_empty()
    });
    assert!(
        lines[0].starts_with(&format!("{lock_name}/")),
        "lock key line {:?}",
        lines[0]
    );

    let mut waiter = etcdctl.spawn(&["lock", lock_name, "--", "echo", "waiter-acquired"]);
    wait_until("the waiter is queued", LOCK_TIMEOUT, || {
        (contenders(&etcdctl, lock_name) == 2).then_some(())
    });
    assert!(
        waiter.lines().is_empty(),
        "the waiter ran while the lock was held"
    );

    // SIGKILL: no unlock; only the 3 s session lease can free the lock.
    holder.kill();
    let status = waiter.wait_for_exit(SESSION_EXPIRY_TIMEOUT);
    assert!(status.success(), "{}", waiter.report());
    assert_eq!(waiter.lines(), ["waiter-acquired"]);
}
