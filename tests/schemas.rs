//! Outbox tables from existing relays, each published by configuration alone (issue
//! 16; docs/schemas.md shows the same configurations): the DDL in tests/schemas/, real
//! PostgreSQL and Kafka. Records land where the configuration says, with the expected
//! key, headers and value, and the polling-era columns stay out of the headers.

mod harness;

use std::{io::Write, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use harness::{
    Names, apply_sql_files,
    process::{Tailbox, base_args},
    wait_streaming,
};
use tailbox_e2e::{
    ConsumedRecord, PgServer, WebhookReceiver, consume_all, shared_kafka, workspace_root,
};

const TIMEOUT: Duration = Duration::from_secs(90);

/// Creates `table` from tests/schemas/<table>.sql, its publication and slot (sql/02,
/// sql/03) and the tailbox role with SELECT on it.
fn setup(pg: &PgServer, names: &Names, tables: &[&str]) -> Result<()> {
    setup_without_slot(pg, names, tables)?;
    apply_sql_files(pg, &[("03_slot.sql", vec![format!("slot={}", names.slot)])])
}

/// [`setup`] but the slot (which `tailbox backfill` creates).
fn setup_without_slot(pg: &PgServer, names: &Names, tables: &[&str]) -> Result<()> {
    for table in tables {
        let path = workspace_root().join("tests/schemas").join(format!("{table}.sql"));
        let ddl = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        pg.psql(&ddl)?;
    }
    let list = tables.iter().map(|t| format!("public.{t}")).collect::<Vec<_>>().join(", ");
    pg.psql(&format!(
        "CREATE PUBLICATION {} FOR TABLE {list} WITH (publish = 'insert')",
        names.publication
    ))?;
    pg.psql(&format!(
        "CREATE ROLE tailbox LOGIN REPLICATION PASSWORD 'tailbox-test'; GRANT SELECT ON {list} TO tailbox"
    ))?;
    Ok(())
}

/// The common arguments with `extra`; a flag in `extra` replaces the common one.
/// The event_outbox table of tests/schemas/event_outbox.sql: its column names.
const EVENT_OUTBOX_COLUMNS: &[&str] = &[
    "--outbox-table",
    "event_outbox",
    "--column-aggregate-type",
    "aggregate_type",
    "--column-aggregate-id",
    "aggregate_id",
    "--column-type",
    "event_type",
];

fn args(pg: &PgServer, kafka: &str, names: &Names, extra: &[&str]) -> Vec<String> {
    let mut args = base_args(pg, kafka, names);
    if let Some(at) = args.iter().position(|a| a == "--topic-template")
        && extra.contains(&"--topic-template")
    {
        args.drain(at..at + 2);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Header names in record order.
fn header_names(record: &ConsumedRecord) -> Vec<&str> {
    record.headers.iter().map(|(k, _)| k.as_str()).collect()
}

fn header(record: &ConsumedRecord, name: &str) -> String {
    record.header(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_outbox_routes_by_its_topic_column_and_key_column() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("sch_underscore");
    setup(&pg, &names, &["_outbox"])?;
    let (orders, payments, dlq) = (
        format!("{}.orders", names.topic_prefix),
        format!("{}.payments", names.topic_prefix),
        format!("{}.dlq", names.topic_prefix),
    );
    let tailbox = Tailbox::start(&args(
        &pg,
        &kafka,
        &names,
        &[
            "--outbox-table",
            "_outbox",
            "--column-type",
            "event_type",
            "--column-aggregate-id",
            "aggregate_id",
            "--column-payload",
            "event_data",
            "--topic-column",
            "destination_topic",
            "--key-column",
            "partition_key",
            "--exclude-columns",
            "published,published_at,attempts,last_attempt_at,error_message,updated_at",
            "--dlq-topic",
            &dlq,
        ],
    ))?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    pg.psql(&format!(
        "INSERT INTO _outbox (event_type, aggregate_id, event_data, destination_topic, partition_key, trace_id, user_id) VALUES \
         ('OrderPlaced', 'order-1', '{{\"n\": 1}}', '{orders}', 'customer-7', 'tr-1', 'u-1'), \
         ('PaymentTaken', 'pay-1', '{{\"n\": 2}}', '{payments}', NULL, NULL, 'u-1'), \
         ('OrderPlaced', 'order-2', '{{\"n\": 3}}', 'not a topic!', NULL, NULL, NULL)"
    ))?;
    let records = consume_all(&kafka, &[orders.clone(), payments.clone()], 2, TIMEOUT).await?;
    let dead = consume_all(&kafka, std::slice::from_ref(&dlq), 1, TIMEOUT).await?;
    let log = tailbox.log_text();
    let order = records.iter().find(|r| r.topic == orders).context("the order event")?;
    ensure!(order.key_str() == "customer-7", "key from partition_key: {order:?}");
    ensure!(order.payload_str() == "{\"n\": 1}", "value = event_data: {order:?}");
    ensure!(
        header_names(order)
            == [
                "id",
                "type",
                "event_version",
                "trace_id",
                "user_id",
                "created_at",
                "lsn",
                "xid",
                "commit_ts"
            ],
        "headers: {:?}\n{log}",
        header_names(order)
    );
    ensure!(header(order, "type") == "OrderPlaced" && header(order, "event_version") == "1");
    let payment = records.iter().find(|r| r.topic == payments).context("the payment event")?;
    ensure!(payment.key_str() == "pay-1", "NULL partition_key: the aggregate id is the key");
    for record in &records {
        for polling in
            ["published", "published_at", "attempts", "destination_topic", "partition_key"]
        {
            ensure!(record.header(polling).is_none(), "{polling} is not a header: {record:?}");
        }
    }
    let [dead] = dead.as_slice() else { bail!("one dead letter, got {dead:?}") };
    ensure!(dead.key_str() == "order-2", "{dead:?}");
    ensure!(header(dead, "error").contains("invalid topic"), "the reason: {dead:?}");
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_outbox_expands_its_metadata_column_into_headers() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("sch_event");
    setup(&pg, &names, &["event_outbox"])?;
    let tailbox = Tailbox::start(&args(
        &pg,
        &kafka,
        &names,
        &[
            EVENT_OUTBOX_COLUMNS,
            &[
                "--headers-column",
                "metadata",
                "--exclude-columns",
                "status,processed_at,retry_count,max_retries,next_retry_at,error_message",
                "--meta-headers",
                "lsn",
            ],
        ]
        .concat(),
    ))?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    pg.psql(
        "INSERT INTO event_outbox (aggregate_id, aggregate_type, event_type, payload, metadata, tenant_id, correlation_id) VALUES \
         ('inv-1', 'Invoice', 'InvoiceIssued', '{\"total\": 10}', '{\"source\": \"billing\", \"attempt\": 1, \"empty\": null}', 'acme', 'b1a7c3e0-0000-4000-8000-000000000001')",
    )?;
    let topic = format!("{}.Invoice", names.topic_prefix);
    let records = consume_all(&kafka, std::slice::from_ref(&topic), 1, TIMEOUT).await?;
    let [record] = records.as_slice() else { bail!("one record, got {records:?}") };
    ensure!(record.key_str() == "inv-1" && record.payload_str() == "{\"total\": 10}", "{record:?}");
    ensure!(
        header_names(record)
            == [
                "id",
                "type",
                "event_version",
                "created_at",
                "tenant_id",
                "correlation_id",
                "attempt",
                "source",
                "lsn"
            ],
        "headers: {:?}\n{}",
        header_names(record),
        tailbox.log_text()
    );
    ensure!(header(record, "source") == "billing" && header(record, "attempt") == "1");
    ensure!(header(record, "type") == "InvoiceIssued");
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_outbox_without_aggregate_or_event_type_routes_by_any_column() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("sch_document");
    setup(&pg, &names, &["document_outbox"])?;
    let template = format!("{}.documents.{{workspace_provider}}", names.topic_prefix);
    let tailbox = Tailbox::start(&args(
        &pg,
        &kafka,
        &names,
        &[
            "--outbox-table",
            "document_outbox",
            "--column-aggregate-id",
            "document_id",
            "--topic-template",
            &template,
            "--header-columns",
            "created_by_person_id",
            "--meta-headers",
            "none",
        ],
    ))?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    pg.psql(
        "INSERT INTO document_outbox (document_id, workspace_provider, created_by_person_id, payload) VALUES \
         ('d0c00000-0000-4000-8000-000000000001', 'gdrive', 'fe000000-0000-4000-8000-000000000002', '{\"title\": \"Plan\"}')",
    )?;
    let topic = format!("{}.documents.gdrive", names.topic_prefix);
    let records = consume_all(&kafka, std::slice::from_ref(&topic), 1, TIMEOUT).await?;
    let [record] = records.as_slice() else { bail!("one record, got {records:?}") };
    ensure!(record.key_str() == "d0c00000-0000-4000-8000-000000000001", "{record:?}");
    ensure!(record.payload_str() == "{\"title\": \"Plan\"}", "{record:?}");
    ensure!(
        header_names(record) == ["id", "created_by_person_id"],
        "the include list plus the id, no status, no lsn/xid/commit_ts: {:?}",
        header_names(record)
    );
    ensure!(header(record, "id") == "1");
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_column_stops_startup_naming_the_option_and_the_fix() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("sch_missing");
    setup(&pg, &names, &["_outbox"])?;
    let run = args(
        &pg,
        &kafka,
        &names,
        &[
            "--outbox-table",
            "_outbox",
            "--column-payload",
            "event_data",
            "--topic-column",
            "destination_topic",
            "--key-column",
            "partitionkey",
        ],
    );
    let (code, output) = harness::process::run_to_exit(&run, Duration::from_secs(60))?;
    ensure!(code.is_some_and(|c| c != 0), "exits with an error: {code:?}\n{output}");
    ensure!(output.contains("has no column \"partitionkey\" (named by key_column)"), "{output}");
    ensure!(output.contains("did you mean \"partition_key\"?"), "{output}");
    Ok(())
}

/// Parses `records` with the CloudEvents Python SDK (installed on first use by
/// scripts/cloudevents-sdk.sh); one JSON object per record.
fn parse_with_sdk(records: &[ConsumedRecord]) -> Result<Vec<serde_json::Value>> {
    let lines = records
        .iter()
        .map(|r| {
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            serde_json::json!({"headers": headers, "key": r.key.as_ref().map(|_| r.key_str()), "value": r.payload_str()})
        })
        .collect();
    run_sdk(lines)
}

/// Feeds `lines` to tests/schemas/parse_cloudevents.py.
fn run_sdk(lines: Vec<serde_json::Value>) -> Result<Vec<serde_json::Value>> {
    let root = workspace_root();
    let out =
        std::process::Command::new("bash").arg(root.join("scripts/cloudevents-sdk.sh")).output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let python = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_owned();
    let mut child = std::process::Command::new(python)
        .arg(root.join("tests/schemas/parse_cloudevents.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut input = String::new();
    for line in lines {
        input.push_str(&format!("{line}\n"));
    }
    child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "the SDK refused the records: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(Into::into))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_records_parse_with_the_cloudevents_sdk() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("sch_ce");
    setup(&pg, &names, &["event_outbox"])?;
    let tailbox = Tailbox::start(&args(
        &pg,
        &kafka,
        &names,
        &[
            EVENT_OUTBOX_COLUMNS,
            &[
                "--format",
                "cloudevents",
                "--cloudevents-source",
                "/billing/{tenant_id}",
                "--header-columns",
                "tenant_id",
            ],
        ]
        .concat(),
    ))?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    pg.psql(
        "INSERT INTO event_outbox (id, aggregate_id, aggregate_type, event_type, payload, tenant_id) VALUES \
         ('e0000000-0000-4000-8000-000000000001', 'inv-1', 'Invoice', 'com.example.InvoiceIssued', '{\"total\": 10}', 'acme')",
    )?;
    let topic = format!("{}.Invoice", names.topic_prefix);
    let records = consume_all(&kafka, std::slice::from_ref(&topic), 1, TIMEOUT).await?;
    let events = parse_with_sdk(&records)?;
    let [event] = events.as_slice() else { bail!("one event, got {events:?}") };
    let attributes = &event["attributes"];
    let expect = [
        ("specversion", "1.0"),
        ("id", "e0000000-0000-4000-8000-000000000001"),
        ("source", "/billing/acme"),
        ("type", "com.example.InvoiceIssued"),
        ("datacontenttype", "application/json"),
        ("partitionkey", "inv-1"),
    ];
    for (name, value) in expect {
        ensure!(attributes[name] == value, "{name}: {attributes}\n{}", tailbox.log_text());
    }
    let time = attributes["time"].as_str().unwrap_or_default();
    let commit: String = pg.psql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')")?;
    ensure!(
        time.starts_with(commit.trim()) && time.ends_with("+00:00"),
        "time = commit time: {time}"
    );
    ensure!(event["data"] == serde_json::json!({"total": 10}), "data = the payload: {event}");
    let record = &records[0];
    ensure!(
        record.header("lsn").is_some() && record.header("tenant_id") == Some(b"acme".as_slice())
    );
    ensure!(
        record.header("id").is_none() && record.header("type").is_none(),
        "ce_id/ce_type instead"
    );
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

/// Two services' outbox tables of different shapes in one publication, both routed to
/// one topic with key "k" (one partition, so Kafka's order is tailbox's): the topic and
/// tailbox's arguments (customer.outbox by flags, product.outbox in `[[tables]]`).
fn two_services(pg: &PgServer, kafka: &str, names: &Names) -> Result<(String, Vec<String>)> {
    // Two services, two outbox tables of different shapes, one publication.
    pg.psql(
        "CREATE SCHEMA customer; CREATE SCHEMA product; \
         CREATE TABLE customer.outbox (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), \
            aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL, payload jsonb NOT NULL); \
         CREATE TABLE product.outbox (event_id bigserial PRIMARY KEY, aggregate_type text NOT NULL, \
            aggregate_id text NOT NULL, event_type text NOT NULL, body jsonb NOT NULL, published boolean NOT NULL DEFAULT false)",
    )?;
    pg.psql(&format!(
        "CREATE PUBLICATION {} FOR TABLE customer.outbox, product.outbox WITH (publish = 'insert'); \
         CREATE ROLE tailbox LOGIN REPLICATION PASSWORD 'tailbox-test'",
        names.publication
    ))?;
    apply_sql_files(pg, &[("03_slot.sql", vec![format!("slot={}", names.slot)])])?;
    // Both route to one topic, key "k": one partition, so Kafka's order is tailbox's.
    let topic = format!("{}.all", names.topic_prefix);
    let config = tailbox_e2e::scratch_dir("schemas-multi").join("tailbox.toml");
    std::fs::create_dir_all(config.parent().context("dir")?)?;
    std::fs::write(
        &config,
        format!(
            "[[tables]]\ntable = \"product.outbox\"\ncolumn_id = \"event_id\"\ncolumn_type = \"event_type\"\n\
             column_aggregate_type = \"aggregate_type\"\ncolumn_aggregate_id = \"aggregate_id\"\n\
             column_payload = \"body\"\ntopic_template = \"{topic}\"\nexclude_columns = [\"published\"]\n"
        ),
    )?;
    let config_path = config.display().to_string();
    let run = args(
        pg,
        kafka,
        names,
        &[
            "--config",
            &config_path,
            "--outbox-table",
            "customer.outbox",
            "--topic-template",
            &topic,
        ],
    );
    Ok((topic, run))
}

/// Transactions on both tables, interleaved and committed in an order other than they
/// began, `rounds` of two; returns (table, n) in commit order.
async fn interleaved_commits(
    pg: &PgServer,
    rounds: std::ops::Range<i32>,
) -> Result<Vec<(&'static str, i32)>> {
    let (customer, product) = (pg.client().await?, pg.client().await?);
    let insert_customer = "INSERT INTO customer.outbox (aggregatetype, aggregateid, type, payload) \
                           VALUES ('Customer', 'k', 'Created', jsonb_build_object('n', $1::int))";
    let insert_product = "INSERT INTO product.outbox (aggregate_type, aggregate_id, event_type, body) \
                          VALUES ('Product', 'k', 'Priced', jsonb_build_object('n', $1::int))";
    let mut expected = Vec::new();
    for round in rounds {
        let (a, b) = (round * 2, round * 2 + 1);
        customer.batch_execute("BEGIN").await?;
        customer.execute(insert_customer, &[&a]).await?;
        product.batch_execute("BEGIN").await?;
        product.execute(insert_product, &[&b]).await?;
        if round % 2 == 0 {
            product.batch_execute("COMMIT").await?;
            customer.batch_execute("COMMIT").await?;
            expected.extend([("product.outbox", b), ("customer.outbox", a)]);
        } else {
            customer.batch_execute("COMMIT").await?;
            product.batch_execute("COMMIT").await?;
            expected.extend([("customer.outbox", a), ("product.outbox", b)]);
        }
    }
    Ok(expected)
}

/// (table, n) of each record of [`two_services`]' topic, in topic order.
fn table_and_n(records: &[ConsumedRecord]) -> Vec<(String, i64)> {
    records
        .iter()
        .map(|r| {
            let n = serde_json::from_slice::<serde_json::Value>(
                r.payload.as_deref().unwrap_or_default(),
            )
            .ok()
            .and_then(|v| v["n"].as_i64())
            .unwrap_or(-1);
            let table = if r.header("type") == Some(b"Priced".as_slice()) {
                "product.outbox"
            } else {
                "customer.outbox"
            };
            (table.to_owned(), n)
        })
        .collect()
}

/// The same two tables with SIGKILLs of tailbox between and during their transactions:
/// every event of both tables arrives, the first arrival of each in commit order
/// (a replay repeats a suffix only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_tables_lose_nothing_across_sigkills() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("sch_multi_kill");
    let (topic, run) = two_services(&pg, &kafka, &names)?;
    let mut tailbox = Tailbox::start(&run)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    let mut expected = Vec::new();
    for rounds in [0..40, 40..80, 80..120] {
        expected.extend(interleaved_commits(&pg, rounds).await?);
        tailbox.kill()?;
        tailbox = Tailbox::start(&run)?;
    }
    let records =
        consume_all(&kafka, std::slice::from_ref(&topic), expected.len(), TIMEOUT).await?;
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<(String, i64)> =
        table_and_n(&records).into_iter().filter(|r| seen.insert(r.clone())).collect();
    let want: Vec<(String, i64)> =
        expected.iter().map(|(t, n)| ((*t).to_owned(), i64::from(*n))).collect();
    println!(
        "several tables, 3 SIGKILLs: {} events, {} records ({} duplicates)",
        want.len(),
        records.len(),
        records.len() - firsts.len()
    );
    ensure!(
        firsts == want,
        "every event, first arrivals in commit order:\n got {firsts:?}\nwant {want:?}\n{}",
        tailbox.log_text()
    );
    tailbox.stop_clean()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_services_tables_in_one_publication_keep_commit_order() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("sch_multi");
    let (topic, run) = two_services(&pg, &kafka, &names)?;
    let tailbox = Tailbox::start(&run)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    let expected = interleaved_commits(&pg, 0..10).await?;
    let records =
        consume_all(&kafka, std::slice::from_ref(&topic), expected.len(), TIMEOUT).await?;
    let got = table_and_n(&records);
    let want: Vec<(String, i64)> =
        expected.iter().map(|(t, n)| ((*t).to_owned(), i64::from(*n))).collect();
    ensure!(
        got == want,
        "commit order across tables:\n got {got:?}\nwant {want:?}\n{}",
        tailbox.log_text()
    );
    let product_record = records
        .iter()
        .find(|r| r.header("type") == Some(b"Priced".as_slice()))
        .context("product")?;
    ensure!(
        header_names(product_record) == ["id", "type", "lsn", "xid", "commit_ts"],
        "{:?}",
        header_names(product_record)
    );
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tables_missing_column_is_named_at_startup() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("sch_multi_missing");
    setup(&pg, &names, &["_outbox", "document_outbox"])?;
    let config = tailbox_e2e::scratch_dir("schemas-missing").join("tailbox.toml");
    std::fs::create_dir_all(config.parent().context("dir")?)?;
    std::fs::write(
        &config,
        "[[tables]]\ntable = \"document_outbox\"\ncolumn_aggregate_id = \"document_id\"\ntopic_template = \"docs.{workspace_providr}\"\n",
    )?;
    let config_path = config.display().to_string();
    let run = args(
        &pg,
        &kafka,
        &names,
        &[
            "--config",
            &config_path,
            "--outbox-table",
            "_outbox",
            "--column-payload",
            "event_data",
            "--topic-column",
            "destination_topic",
        ],
    );
    let (code, output) = harness::process::run_to_exit(&run, Duration::from_secs(60))?;
    ensure!(code.is_some_and(|c| c != 0), "exits with an error: {code:?}\n{output}");
    ensure!(
        output.contains(
            "public.document_outbox has no column \"workspace_providr\" (named by topic_template)"
        ) && output.contains("did you mean \"workspace_provider\"?"),
        "{output}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_from_a_polling_relay_publishes_its_unpublished_rows_then_streams() -> Result<()>
{
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("sch_takeover");
    setup_without_slot(&pg, &names, &["_outbox"])?;
    let topic = format!("{}.orders", names.topic_prefix);
    // The poller published 1 and 2; 3 and 4 were still waiting when it was stopped.
    pg.psql(&format!(
        "INSERT INTO _outbox (event_type, aggregate_id, event_data, destination_topic, published) \
         SELECT 'OrderPlaced', 'order-' || i, jsonb_build_object('n', i), '{topic}', i <= 2 \
         FROM generate_series(1, 4) AS i"
    ))?;
    let mut run = args(
        &pg,
        &kafka,
        &names,
        &[
            "--where",
            "NOT published",
            "--order-by",
            "created_at, id",
            "--outbox-table",
            "_outbox",
            "--column-type",
            "event_type",
            "--column-aggregate-id",
            "aggregate_id",
            "--column-payload",
            "event_data",
            "--topic-column",
            "destination_topic",
            "--exclude-columns",
            "published,published_at,attempts,last_attempt_at,error_message,updated_at",
        ],
    );
    run[0] = "backfill".into();
    let tailbox = Tailbox::start(&run)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    pg.psql(&format!(
        "INSERT INTO _outbox (event_type, aggregate_id, event_data, destination_topic) \
         VALUES ('OrderPlaced', 'order-5', '{{\"n\": 5}}', '{topic}')"
    ))?;
    let records = consume_all(&kafka, std::slice::from_ref(&topic), 3, TIMEOUT).await?;
    let mut keys: Vec<String> = records.iter().map(ConsumedRecord::key_str).collect();
    keys.sort();
    ensure!(
        keys == ["order-3", "order-4", "order-5"],
        "the unpublished rows, then the new one, nothing twice: {keys:?}\n{}",
        tailbox.log_text()
    );
    ensure!(records.iter().all(|r| r.header("published").is_none()));
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_webhooks_parse_with_the_sdks_http_binding_and_route_by_any_column()
-> Result<()> {
    let pg = PgServer::start()?;
    let names = Names::new("sch_ce_http");
    setup(&pg, &names, &["document_outbox"])?;
    apply_sql_files(&pg, &[("05_webhook_tables.sql", vec![])])?;
    let receiver = WebhookReceiver::start("whsec_c2NoZW1hcy10ZXN0LXNlY3JldA==").await?;
    let url = format!("{}/docs/{{topic}}", receiver.url());
    let mut run = args(
        &pg,
        "unused:9092",
        &names,
        &[
            "--sink",
            "webhook",
            "--webhook-url",
            &url,
            "--outbox-table",
            "document_outbox",
            "--column-aggregate-id",
            "document_id",
            "--topic-template",
            "documents.{workspace_provider}",
            "--format",
            "cloudevents",
            "--cloudevents-type",
            "com.example.document.{workspace_provider}",
            "--cloudevents-source",
            "/documents",
        ],
    );
    if let Some(at) = run.iter().position(|a| a == "--kafka-brokers") {
        run.drain(at..at + 2);
    }
    let tailbox = Tailbox::start(&run)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    pg.psql(
        "INSERT INTO document_outbox (document_id, workspace_provider, created_by_person_id, payload) VALUES \
         ('d0c00000-0000-4000-8000-000000000001', 'dropbox', 'fe000000-0000-4000-8000-000000000002', '{\"title\": \"Plan\"}')",
    )?;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let arrival = loop {
        if let Some(a) = receiver.arrivals().into_iter().find(|a| a.delivered()) {
            break a;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no request arrived\n{}",
            tailbox.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(
        arrival.path == "/docs/documents.dropbox",
        "the URL routes by the column: {}",
        arrival.path
    );
    let line = serde_json::json!({
        "binding": "http",
        "headers": arrival.headers,
        "value": String::from_utf8_lossy(&arrival.body),
    });
    let events = run_sdk(vec![line])?;
    let [event] = events.as_slice() else { bail!("one event, got {events:?}") };
    let attributes = &event["attributes"];
    for (name, value) in [
        ("specversion", "1.0"),
        ("id", "1"),
        ("source", "/documents"),
        ("type", "com.example.document.dropbox"),
        ("datacontenttype", "application/json"),
    ] {
        ensure!(attributes[name] == value, "{name}: {attributes}");
    }
    ensure!(attributes["time"].as_str().is_some_and(|t| t.ends_with("+00:00")), "{attributes}");
    ensure!(event["data"] == serde_json::json!({"title": "Plan"}), "{event}");
    ensure!(arrival.id == "1", "webhook-id = ce-id: {}", arrival.id);
    tailbox.terminate(Duration::from_secs(30))?;
    Ok(())
}
