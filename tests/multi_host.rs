//! A `--pg-url` with several hosts (libpq's `postgres://h1,h2/db`): both connections
//! try the hosts in order, and `target_session_attrs=read-write` passes over a standby.

mod harness;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args},
    wait_streaming,
};
use tailbox_e2e::{PgServer, consume_pattern, shared_kafka};

/// `base_args` with `--pg-url` replaced by one listing `ports` in order.
fn args_with_hosts(base: &[String], ports: &[u16], query: &str) -> Result<Vec<String>> {
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let url = format!("postgres://tailbox:tailbox-test@{}/postgres{query}", hosts.join(","));
    let mut args = base.to_vec();
    let i = args.iter().position(|a| a == "--pg-url").context("--pg-url in base_args")? + 1;
    args[i] = url;
    Ok(args)
}

/// A port nothing listens on.
fn dead_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Inserts one event and waits for it in Kafka.
async fn one_event_arrives(pg: &PgServer, kafka: &str, names: &Names) -> Result<()> {
    pg.psql(
        "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
         VALUES ('Agg0', 'a', 'Happened', '{\"multi\": \"host\"}')",
    )?;
    let records =
        consume_pattern(kafka, &names.topic_pattern(), 1, Duration::from_secs(60)).await?;
    ensure!(
        records.iter().any(|r| r.payload_str().contains("multi")),
        "the event arrived: {:?}",
        records.iter().map(|r| r.payload_str()).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_host_is_passed_over() -> Result<()> {
    let pg = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("multihost_dead");
    apply_sql(&pg, &names)?;
    let args = args_with_hosts(&base_args(&pg, &kafka, &names), &[dead_port()?, pg.port()], "")?;
    let tailbox = Tailbox::start(&args)?;
    wait_streaming(&pg, &names.slot, &tailbox).await?;
    one_event_arrives(&pg, &kafka, &names).await?;
    tailbox.stop_clean()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_passes_over_a_standby_to_the_primary() -> Result<()> {
    let primary = PgServer::start()?;
    let kafka = shared_kafka().bootstrap().to_owned();
    let names = Names::new("multihost_rw");
    apply_sql(&primary, &names)?;
    let standby = primary.cold_copy(true)?;
    let in_recovery = standby.psql("SELECT pg_is_in_recovery()")?;
    ensure!(in_recovery.trim() == "t", "the copy is a standby: {in_recovery:?}");
    let args = args_with_hosts(
        &base_args(&primary, &kafka, &names),
        &[standby.port(), primary.port()],
        "?target_session_attrs=read-write",
    )?;
    let tailbox = Tailbox::start(&args)?;
    wait_streaming(&primary, &names.slot, &tailbox).await?;
    one_event_arrives(&primary, &kafka, &names).await?;
    let log = tailbox.stop_clean()?;
    ensure!(log.contains("takes no writes"), "the standby was tried and passed over:\n{log}");
    Ok(())
}
