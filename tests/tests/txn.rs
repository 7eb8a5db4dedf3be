//! Guards transactions as etcdctl drives them through its stdin syntax
//! (compares, blank line, success ops, blank line, failure ops, blank line):
//! both branches run, every compare target (value, version, create, mod)
//! evaluates, a txn is one revision, reads see the txn's own earlier
//! writes, and a key written twice in one txn or more than 128 operations
//! are refused with etcd's errors.

use cairn_tests::Cluster;

/// etcd's default `--max-txn-ops`: a txn may hold this many operations.
const TXN_OPERATIONS_MAX: usize = 128;

#[test]
fn success_branch_runs_when_every_compare_holds() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    etcdctl.put("t1", "one");
    let before = etcdctl.get(&["t1"]).revision;

    let script = "value(\"t1\") = \"one\"\nversion(\"missing\") = \"0\"\n\n\
                  put t2 two\nget t1\ndel t1\n\nput t3 three\n\n";
    let output = etcdctl
        .run_with_stdin(&["txn"], script.as_bytes())
        .expect_success();
    assert_eq!(output.stdout, "SUCCESS\n\nOK\n\nt1\none\n\n1\n", "{output}");

    assert_eq!(etcdctl.value("t2").as_deref(), Some("two"));
    assert_eq!(etcdctl.value("t1"), None, "the success branch deleted t1");
    assert_eq!(etcdctl.value("t3"), None, "the failure branch did not run");
    let after = etcdctl.get(&["t2"]);
    assert_eq!(
        after.revision,
        before + 1,
        "a txn with writes is exactly one revision"
    );
    assert_eq!(after.kvs[0].mod_revision, before + 1);
}

#[test]
fn failure_branch_runs_when_a_compare_fails() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    etcdctl.put("t2", "two");

    let script = "value(\"t2\") = \"nope\"\n\nput t2 changed\n\nput t3 three\nget t2\n\n";
    let output = etcdctl
        .run_with_stdin(&["txn"], script.as_bytes())
        .expect_success();
    assert_eq!(output.stdout, "FAILURE\n\nOK\n\nt2\ntwo\n", "{output}");
    assert_eq!(
        etcdctl.value("t2").as_deref(),
        Some("two"),
        "the success branch did not run"
    );
    assert_eq!(etcdctl.value("t3").as_deref(), Some("three"));

    // -w json: "succeeded" is omitted when false.
    let script = "value(\"t2\") > \"zzz\"\n\n\nput t4 four\n\n";
    let json = etcdctl
        .run_with_stdin(&["txn", "-w", "json"], script.as_bytes())
        .expect_success();
    let reply = json.json();
    assert!(!reply["succeeded"].as_bool().unwrap_or(false), "{json}");
    assert!(
        reply["responses"][0]["Response"]["ResponsePut"].is_object(),
        "{json}"
    );
}

#[test]
fn compares_on_version_create_and_mod_revisions() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    let created = etcdctl.put("counter", "0");
    let modified = etcdctl.put("counter", "1");

    let holds = |compares: &str| {
        let script = format!("{compares}\n\nget counter\n\n\n");
        let output = etcdctl
            .run_with_stdin(&["txn", "-w", "json"], script.as_bytes())
            .expect_success();
        output.json()["succeeded"].as_bool().unwrap_or(false)
    };
    assert!(holds("version(\"counter\") = \"2\""));
    assert!(!holds("version(\"counter\") = \"1\""));
    assert!(holds(&format!("create(\"counter\") = \"{created}\"")));
    assert!(holds(&format!("mod(\"counter\") = \"{modified}\"")));
    assert!(holds(&format!("mod(\"counter\") > \"{created}\"")));
    assert!(!holds(&format!("mod(\"counter\") < \"{modified}\"")));
    assert!(holds("version(\"counter\") != \"5\""));
    assert!(holds("value(\"counter\") < \"2\""));
    // All compares must hold; one failing compare fails the txn.
    assert!(!holds(&format!(
        "create(\"counter\") = \"{created}\"\nvalue(\"counter\") = \"0\""
    )));
    // A missing key has create revision 0: the lock recipe's compare.
    assert!(holds("create(\"absent\") = \"0\""));
}

#[test]
fn reads_see_earlier_writes_and_duplicate_writes_are_refused() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();

    let output = etcdctl
        .run_with_stdin(&["txn"], b"\nput t9 new\nget t9\n\n\n")
        .expect_success();
    assert_eq!(output.stdout, "SUCCESS\n\nOK\n\nt9\nnew\n", "{output}");

    let before = etcdctl.get(&["t9"]).revision;
    etcdctl
        .run_with_stdin(&["txn"], b"\nput d 1\nput d 2\n\n\n")
        .expect_failure()
        .expect_stderr_contains("etcdserver: duplicate key given in txn request");
    assert_eq!(etcdctl.value("d"), None, "a refused txn writes nothing");
    assert_eq!(
        etcdctl.get(&["t9"]).revision,
        before,
        "a refused txn is no revision"
    );

    // etcd's default --max-txn-ops is 128.
    let mut script = String::from("\n");
    for index in 0..=TXN_OPERATIONS_MAX {
        script.push_str(&format!("put many/{index} v\n"));
    }
    script.push_str("\n\n");
    etcdctl
        .run_with_stdin(&["txn"], script.as_bytes())
        .expect_failure()
        .expect_stderr_contains("etcdserver: too many operations in txn request");
    assert!(etcdctl.get(&["many/", "--prefix"]).kvs.is_empty());
}
