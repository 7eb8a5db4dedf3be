//! Guards the key-value surface etcdctl users touch first: put and get of
//! single keys, prefixes, ranges, `--from-key`, `--limit`, every
//! `--sort-by`/`--order`, historical reads with `--rev`, revision
//! bookkeeping seen through `-w json` (create/mod revision, version), and
//! delete of a key, a range and a prefix with and without `--prev-kv`.

use cairn_tests::Cluster;

#[test]
fn put_then_get_tracks_revisions_and_versions() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();

    let output = etcdctl.run(&["put", "greeting", "hello"]).expect_success();
    assert_eq!(output.stdout, "OK\n", "simple output of put");
    let first = etcdctl.get(&["greeting"]);
    assert_eq!(first.kvs.len(), 1, "{first:?}");
    let created = &first.kvs[0];
    assert_eq!(
        (created.key.as_str(), created.value.as_str()),
        ("greeting", "hello")
    );
    assert_eq!(created.version, 1, "a new key has version 1: {created:?}");
    assert_eq!(created.create_revision, created.mod_revision, "{created:?}");
    assert_eq!(
        first.revision, created.mod_revision,
        "the put is the latest revision"
    );

    let second_revision = etcdctl.put("greeting", "hello again");
    assert_eq!(
        second_revision,
        first.revision + 1,
        "each put advances the revision by one"
    );
    let second = etcdctl.get(&["greeting"]);
    let updated = &second.kvs[0];
    assert_eq!(updated.value, "hello again");
    assert_eq!(updated.version, 2, "{updated:?}");
    assert_eq!(
        updated.create_revision, created.create_revision,
        "{updated:?}"
    );
    assert_eq!(updated.mod_revision, second_revision, "{updated:?}");

    // Simple output: key line, value line.
    let simple = etcdctl.run(&["get", "greeting"]).expect_success();
    assert_eq!(simple.stdout, "greeting\nhello again\n");
    let value_only = etcdctl
        .run(&["get", "greeting", "--print-value-only"])
        .expect_success();
    assert_eq!(value_only.stdout, "hello again\n");

    // A read at the first revision still sees the first value.
    let historical = etcdctl.get(&["greeting", &format!("--rev={}", created.mod_revision)]);
    assert_eq!(historical.kvs[0].value, "hello", "{historical:?}");
    assert_eq!(historical.kvs[0].version, 1, "{historical:?}");

    // A missing key is an empty, successful answer.
    let missing = etcdctl.run(&["get", "no-such-key"]).expect_success();
    assert_eq!(missing.stdout, "", "{missing}");
    assert!(etcdctl.get(&["no-such-key"]).kvs.is_empty());
}

#[test]
fn prefix_range_from_key_limit_and_sort() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    // Values sort opposite to keys, creation order differs from both.
    for (key, value) in [
        ("fruit/banana", "2-yellow"),
        ("fruit/apple", "3-red"),
        ("fruit/cherry", "1-dark"),
        ("veg/kale", "0-green"),
    ] {
        etcdctl.put(key, value);
    }
    // A second put gives banana version 2 and the newest mod revision.
    etcdctl.put("fruit/banana", "2-yellow");

    let prefix = etcdctl.run(&["get", "fruit/", "--prefix"]).expect_success();
    assert_eq!(
        prefix.stdout_lines(),
        [
            "fruit/apple",
            "3-red",
            "fruit/banana",
            "2-yellow",
            "fruit/cherry",
            "1-dark"
        ]
    );

    // [start, end): the end key is excluded.
    let range = etcdctl.get(&["fruit/apple", "fruit/cherry"]);
    assert_eq!(range.keys(), ["fruit/apple", "fruit/banana"]);

    let from_key = etcdctl.get(&["fruit/banana", "--from-key"]);
    assert_eq!(
        from_key.keys(),
        ["fruit/banana", "fruit/cherry", "veg/kale"]
    );

    let keys_only = etcdctl
        .run(&["get", "fruit/", "--prefix", "--keys-only"])
        .expect_success();
    assert_eq!(
        keys_only.stdout,
        "fruit/apple\n\nfruit/banana\n\nfruit/cherry\n\n"
    );

    let limited = etcdctl.get(&["fruit/", "--prefix", "--limit=2"]);
    assert_eq!(limited.keys(), ["fruit/apple", "fruit/banana"]);
    assert!(
        limited.more,
        "a limited range reports more keys: {limited:?}"
    );
    assert_eq!(limited.count, 3, "count ignores the limit: {limited:?}");
    let unlimited = etcdctl.get(&["fruit/", "--prefix"]);
    assert!(!unlimited.more, "{unlimited:?}");
    assert_eq!(unlimited.count, 3, "{unlimited:?}");

    let sorted = |sort_by: &str, order: &str| {
        let reply = etcdctl.get(&[
            "fruit/",
            "--prefix",
            &format!("--sort-by={sort_by}"),
            &format!("--order={order}"),
        ]);
        reply
            .keys()
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        sorted("KEY", "DESCEND"),
        ["fruit/cherry", "fruit/banana", "fruit/apple"]
    );
    assert_eq!(
        sorted("KEY", "ASCEND"),
        ["fruit/apple", "fruit/banana", "fruit/cherry"]
    );
    assert_eq!(
        sorted("VALUE", "ASCEND"),
        ["fruit/cherry", "fruit/banana", "fruit/apple"]
    );
    assert_eq!(
        sorted("VALUE", "DESCEND"),
        ["fruit/apple", "fruit/banana", "fruit/cherry"]
    );
    assert_eq!(
        sorted("CREATE", "ASCEND"),
        ["fruit/banana", "fruit/apple", "fruit/cherry"]
    );
    assert_eq!(
        sorted("CREATE", "DESCEND"),
        ["fruit/cherry", "fruit/apple", "fruit/banana"]
    );
    assert_eq!(
        sorted("MODIFY", "ASCEND"),
        ["fruit/apple", "fruit/cherry", "fruit/banana"]
    );
    assert_eq!(
        sorted("MODIFY", "DESCEND"),
        ["fruit/banana", "fruit/cherry", "fruit/apple"]
    );
    assert_eq!(
        sorted("VERSION", "DESCEND")[0],
        "fruit/banana",
        "banana has version 2"
    );

    // Sorting applies before the limit: the two newest by modification.
    let newest = etcdctl.get(&[
        "fruit/",
        "--prefix",
        "--sort-by=MODIFY",
        "--order=DESCEND",
        "--limit=2",
    ]);
    assert_eq!(newest.keys(), ["fruit/banana", "fruit/cherry"]);
}

#[test]
fn delete_single_range_prefix_and_prev_kv() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    for (key, value) in [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("dir/x", "10"),
        ("dir/y", "20"),
        ("dirt", "mud"),
    ] {
        etcdctl.put(key, value);
    }
    let before = etcdctl.get(&["a"]).revision;

    let single = etcdctl.run(&["del", "a"]).expect_success();
    assert_eq!(
        single.stdout, "1\n",
        "del prints the number of deleted keys"
    );
    assert_eq!(etcdctl.value("a"), None);
    assert_eq!(
        etcdctl.get(&["b"]).revision,
        before + 1,
        "a delete is one revision"
    );

    let missing = etcdctl.run(&["del", "a"]).expect_success();
    assert_eq!(missing.stdout, "0\n", "deleting nothing succeeds with 0");
    assert_eq!(
        etcdctl.get(&["b"]).revision,
        before + 1,
        "deleting nothing is no revision"
    );

    let with_previous = etcdctl.run(&["del", "b", "--prev-kv"]).expect_success();
    assert_eq!(with_previous.stdout_lines(), ["1", "b", "2"]);

    // The prefix "dir/" must not touch "dirt".
    let prefix = etcdctl
        .run(&["del", "dir/", "--prefix", "--prev-kv"])
        .expect_success();
    assert_eq!(prefix.stdout_lines(), ["2", "dir/x", "10", "dir/y", "20"]);
    assert_eq!(etcdctl.value("dirt").as_deref(), Some("mud"));

    etcdctl.put("k1", "v");
    etcdctl.put("k2", "v");
    etcdctl.put("k3", "v");
    let range = etcdctl.run(&["del", "k1", "k3"]).expect_success();
    assert_eq!(range.stdout, "2\n", "[k1, k3) holds k1 and k2");
    assert_eq!(etcdctl.get(&["k", "--prefix"]).keys(), ["k3"]);

    // The deleted value is still readable at an older revision.
    let historical = etcdctl.get(&["a", &format!("--rev={before}")]);
    assert_eq!(historical.kvs[0].value, "1", "{historical:?}");

    // Recreating a deleted key starts a new incarnation at version 1.
    let recreated_revision = etcdctl.put("a", "again");
    let recreated = etcdctl.get(&["a"]);
    assert_eq!(recreated.kvs[0].version, 1, "{recreated:?}");
    assert_eq!(
        recreated.kvs[0].create_revision, recreated_revision,
        "{recreated:?}"
    );
}

#[test]
fn put_options_and_refused_arguments() {
    let cluster = Cluster::start(1);
    let etcdctl = cluster.etcdctl();
    etcdctl.put("pk", "old");

    let previous = etcdctl
        .run(&["put", "pk", "new", "--prev-kv"])
        .expect_success();
    assert_eq!(
        previous.stdout, "OK\npk\nold\n",
        "--prev-kv prints the replaced pair"
    );

    // --ignore-value rewrites the key with its current value.
    let before = etcdctl.get(&["pk"]).kvs.remove(0);
    let revision = {
        let output = etcdctl
            .run(&["put", "pk", "--ignore-value", "-w", "json"])
            .expect_success();
        output.json()["header"]["revision"]
            .as_i64()
            .expect("header.revision")
    };
    let after = etcdctl.get(&["pk"]).kvs.remove(0);
    assert_eq!(after.value, "new", "{after:?}");
    assert_eq!(after.version, before.version + 1, "{after:?}");
    assert_eq!(after.mod_revision, revision, "{after:?}");

    // --ignore-lease keeps the attached lease across a new value.
    let grant = etcdctl.run(&["lease", "grant", "100"]).expect_success();
    let lease = grant
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();
    etcdctl
        .run(&["put", "pk", "leased", &format!("--lease={lease}")])
        .expect_success();
    etcdctl
        .run(&["put", "pk", "relabelled", "--ignore-lease"])
        .expect_success();
    let relabelled = etcdctl.get(&["pk"]).kvs.remove(0);
    assert_eq!(relabelled.value, "relabelled");
    let lease_number = u64::from_str_radix(&lease, 16).expect("hex lease id") as i64;
    assert_eq!(relabelled.lease, lease_number, "{relabelled:?}");

    let revision = etcdctl.get(&["pk"]).revision;
    etcdctl
        .run(&["put", "absent", "--ignore-value"])
        .expect_failure()
        .expect_stderr_contains("Error: etcdserver: key not found");
    etcdctl
        .run(&["put", "", "value"])
        .expect_failure()
        .expect_stderr_contains("Error: etcdserver: key is not provided");
    assert_eq!(
        etcdctl.get(&["pk"]).revision,
        revision,
        "refused puts are no revision"
    );

    // --from-key with the empty key spans the whole keyspace.
    etcdctl.put("zz", "last");
    let everything = etcdctl.run(&["del", "", "--from-key"]).expect_success();
    assert_eq!(everything.stdout, "2\n", "pk and zz");
    assert!(etcdctl.get(&["", "--from-key"]).kvs.is_empty());
}
