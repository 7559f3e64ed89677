//! tailbox against a Kafka broker with TLS and SASL listeners (`scripts/kafka.sh
//! start-secure`: a test CA, a broker certificate naming 127.0.0.1 only, SASL PLAIN and
//! SCRAM-SHA-256/512 over TLS). End to end through the binary: events reach Kafka over
//! SSL (the broker's certificate checked against `ssl.ca.location`), over SASL_SSL with
//! PLAIN (password from the environment) and with SCRAM (password from
//! `--kafka-sasl-password-file`, and from the config file); the producer, the admin
//! client and the checkpoint reader all use the secure listener (the broker is given by
//! its secure address only). A wrong password or an untrusted certificate is reported
//! in the log, naming the cause; no password ever shows in the log or in `config check`.
//!
//! Records are read back through the broker's PLAINTEXT listener by the test consumer.

mod harness;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow, ensure};
use harness::{
    Names, apply_sql,
    process::{Tailbox, base_args, output_text, run_command},
    simple_events_arrive, write_simple_events,
};
use tailbox_e2e::{
    KafkaBroker, KafkaSecureListeners, PgServer, consume_pattern, scratch_dir, tailbox_bin,
};

const EVENTS: usize = 30;

static BROKER: OnceLock<std::result::Result<(KafkaBroker, KafkaSecureListeners), String>> =
    OnceLock::new();

/// One secure broker for every test of this binary (it dies with the test process).
fn broker() -> Result<&'static (KafkaBroker, KafkaSecureListeners)> {
    BROKER
        .get_or_init(|| KafkaBroker::start_secure().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("the secure Kafka broker did not start: {e}"))
}

/// PostgreSQL with the outbox set up for `names`.
fn outbox_db(names: &Names) -> Result<PgServer> {
    let pg = PgServer::start()?;
    apply_sql(&pg, names)?;
    Ok(pg)
}

/// Writes events and reads them back (over PLAINTEXT), all of them, once each at least.
async fn events_arrive(pg: &PgServer, plaintext: &str, names: &Names, log: &Path) -> Result<()> {
    simple_events_arrive(pg, plaintext, names, EVENTS, || {
        format!("tailbox log:\n{}", std::fs::read_to_string(log).unwrap_or_default())
    })
    .await
}

/// `base_args` against `bootstrap` plus `--kafka-prop`s.
fn args(pg: &PgServer, bootstrap: &str, names: &Names, props: &[String]) -> Vec<String> {
    let mut args = base_args(pg, bootstrap, names);
    args.extend(["--metrics-addr".to_owned(), String::new()]);
    for prop in props {
        args.extend(["--kafka-prop".to_owned(), prop.clone()]);
    }
    args
}

fn ssl_props(ca: &Path) -> Vec<String> {
    vec!["security.protocol=SSL".into(), format!("ssl.ca.location={}", ca.display())]
}

fn sasl_props(mechanism: &str, user: &str, ca: &Path) -> Vec<String> {
    vec![
        "security.protocol=SASL_SSL".into(),
        format!("sasl.mechanism={mechanism}"),
        format!("sasl.username={user}"),
        format!("ssl.ca.location={}", ca.display()),
    ]
}

/// A file holding `password` (mode 0600), as a mounted secret would.
fn secret_file(name: &str, text: &str) -> Result<PathBuf> {
    let dir = scratch_dir("kafka-secret");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(path)
}

/// Checks the log of a run that must not show `secret`.
fn ensure_not_in(text: &str, secret: &str, what: &str) -> Result<()> {
    ensure!(!secret.is_empty(), "empty secret");
    ensure!(!text.contains(secret), "{what} shows the password:\n{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_listener_streams_with_the_broker_certificate_verified() -> Result<()> {
    let (kafka, tls) = broker()?;
    let names = Names::new("kafka_ssl");
    let pg = outbox_db(&names)?;
    // The broker is named by its SSL address only: producer, admin client and checkpoint
    // reader must all speak TLS; librdkafka checks the certificate against the CA and
    // (ssl.endpoint.identification.algorithm=https, its default) the address 127.0.0.1.
    let tailbox = Tailbox::start(&args(&pg, &tls.ssl, &names, &ssl_props(&tls.ca)))?;
    events_arrive(&pg, kafka.bootstrap(), &names, &tailbox.log).await?;
    tailbox.stop_clean()?;
    Ok(())
}

/// A CA that did not sign the broker's certificate: nothing is published, and the log
/// says why (tailbox keeps retrying, as for any unreachable broker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_broker_certificate_is_refused_and_logged() -> Result<()> {
    let (kafka, tls) = broker()?;
    let names = Names::new("kafka_ssl_bad_ca");
    let pg = outbox_db(&names)?;
    let mut tailbox = Tailbox::start(&args(&pg, &tls.ssl, &names, &ssl_props(&tls.other_ca)))?;
    write_simple_events(&pg, 5)?;
    let text = wait_for_log(&tailbox.log, "certificate verify failed", Duration::from_secs(60))?;
    println!("untrusted certificate: {}", first_line_with(&text, "certificate verify failed"));
    let records =
        consume_pattern(kafka.bootstrap(), &names.topic_pattern(), 0, Duration::from_secs(5))
            .await?;
    ensure!(
        records.is_empty(),
        "{} records were published over an untrusted TLS connection",
        records.len()
    );
    ensure!(tailbox.is_running(), "tailbox keeps retrying; log:\n{}", tailbox.log_text());
    Ok(())
}

/// SASL PLAIN over TLS, every Kafka setting (the password included) from
/// `TAILBOX_KAFKA_PROPS`, as a container's environment would give it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_over_tls_streams_with_the_password_from_the_environment() -> Result<()> {
    let (kafka, tls) = broker()?;
    let password = tls.password()?;
    let names = Names::new("kafka_plain");
    let pg = outbox_db(&names)?;
    let mut props = sasl_props("PLAIN", &tls.user, &tls.ca);
    props.push(format!("sasl.password={password}"));
    let tailbox = Tailbox::start_with_env(
        &args(&pg, &tls.sasl_ssl, &names, &[]),
        &[("TAILBOX_KAFKA_PROPS", &props.join(","))],
    )?;
    events_arrive(&pg, kafka.bootstrap(), &names, &tailbox.log).await?;
    let text = tailbox.stop_clean()?;
    ensure_not_in(&text, &password, "the log")
}

/// SCRAM-SHA-256 over TLS with the password from `--kafka-sasl-password-file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_sha256_streams_with_the_password_from_a_file() -> Result<()> {
    let (kafka, tls) = broker()?;
    let password = tls.password()?;
    let names = Names::new("kafka_scram256");
    let pg = outbox_db(&names)?;
    let file = secret_file("kafka-password", &format!("{password}\n"))?;
    let mut args =
        args(&pg, &tls.sasl_ssl, &names, &sasl_props("SCRAM-SHA-256", &tls.user, &tls.ca));
    args.extend(["--kafka-sasl-password-file".to_owned(), file.to_string_lossy().into_owned()]);
    let tailbox = Tailbox::start(&args)?;
    events_arrive(&pg, kafka.bootstrap(), &names, &tailbox.log).await?;
    let text = tailbox.stop_clean()?;
    ensure_not_in(&text, &password, "the log")
}

/// SCRAM-SHA-512 with everything in the TOML config file (`kafka_props` table and
/// `kafka_sasl_password_file`), with exactly-once on (a transactional producer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_sha512_from_the_config_file_with_exactly_once() -> Result<()> {
    let (kafka, tls) = broker()?;
    let password = tls.password()?;
    let names = Names::new("kafka_scram512");
    let pg = outbox_db(&names)?;
    let file = secret_file("kafka-password", &password)?;
    let config = secret_file(
        "tailbox.toml",
        &format!(
            "kafka_sasl_password_file = {:?}\nexactly_once = true\n\n[kafka_props]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = {:?}\n\"ssl.ca.location\" = {:?}\n",
            file.to_string_lossy(),
            tls.user,
            tls.ca.to_string_lossy()
        ),
    )?;
    let mut args = vec!["--config".to_owned(), config.to_string_lossy().into_owned()];
    args.extend(base_args(&pg, &tls.sasl_ssl, &names));
    args.extend(["--metrics-addr".to_owned(), String::new()]);
    let tailbox = Tailbox::start(&args)?;
    events_arrive(&pg, kafka.bootstrap(), &names, &tailbox.log).await?;
    let text = tailbox.stop_clean()?;
    ensure_not_in(&text, &password, "the log")
}

/// A wrong SASL password: nothing is published, the log names the authentication
/// failure (for each mechanism), and neither password appears in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sasl_password_is_reported_clearly_and_never_logged() -> Result<()> {
    let (kafka, tls) = broker()?;
    let password = tls.password()?;
    let wrong = format!("wrong-{}-Zq8x", std::process::id());
    for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
        let names = Names::new(&format!("kafka_wrong_{}", mechanism.replace('-', "_")));
        let pg = outbox_db(&names)?;
        let file = secret_file("kafka-password", &wrong)?;
        let mut args = args(&pg, &tls.sasl_ssl, &names, &sasl_props(mechanism, &tls.user, &tls.ca));
        args.extend(["--kafka-sasl-password-file".to_owned(), file.to_string_lossy().into_owned()]);
        let mut tailbox = Tailbox::start(&args)?;
        write_simple_events(&pg, 5)?;
        let text = wait_for_log(&tailbox.log, "Authentication failed", Duration::from_secs(60))?;
        println!("{mechanism}: {}", first_line_with(&text, "Authentication failed"));
        let records =
            consume_pattern(kafka.bootstrap(), &names.topic_pattern(), 0, Duration::from_secs(3))
                .await?;
        ensure!(records.is_empty(), "{mechanism}: {} records published", records.len());
        ensure!(
            tailbox.is_running(),
            "{mechanism}: tailbox keeps retrying; log:\n{}",
            tailbox.log_text()
        );
        let text = tailbox.log_text();
        ensure_not_in(&text, &wrong, "the log")?;
        ensure_not_in(&text, &password, "the log")?;
    }
    Ok(())
}

/// What a `config check` case is called, its extra arguments and its environment.
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// `config check` shows the Kafka security settings but never a password, wherever it
/// came from.
#[tokio::test]
async fn config_check_never_shows_kafka_secrets() -> Result<()> {
    let secret = format!("kpw-{}-Zq8x", std::process::id());
    let file = secret_file("kafka-password", &format!("{secret}\n"))?;
    let file = file.to_string_lossy().into_owned();
    let config = secret_file(
        "tailbox.toml",
        &format!(
            "[kafka_props]\n\"sasl.password\" = {secret:?}\n\"ssl.key.password\" = \"key-{secret}\"\n\"security.protocol\" = \"SASL_SSL\"\n"
        ),
    )?;
    let config = config.to_string_lossy().into_owned();
    let common =
        ["--pg-url", "postgres://tailbox@127.0.0.1:9/app", "--kafka-brokers", "127.0.0.1:9"];
    let env_props =
        format!("security.protocol=SASL_SSL,sasl.mechanism=PLAIN,sasl.password={secret}");
    let flag_password = format!("sasl.password={secret}");
    let keystore = format!("ssl.keystore.password=ks-{secret}");
    let cases: Vec<Case<'_>> = vec![
        (
            "--kafka-sasl-password-file",
            vec![
                "--kafka-prop",
                "sasl.mechanism=SCRAM-SHA-256",
                "--kafka-sasl-password-file",
                &file,
            ],
            vec![],
        ),
        (
            "TAILBOX_KAFKA_SASL_PASSWORD_FILE",
            vec![],
            vec![("TAILBOX_KAFKA_SASL_PASSWORD_FILE", &file)],
        ),
        ("--kafka-prop", vec!["--kafka-prop", &flag_password, "--kafka-prop", &keystore], vec![]),
        ("TAILBOX_KAFKA_PROPS", vec![], vec![("TAILBOX_KAFKA_PROPS", &env_props)]),
        ("the config file", vec!["--config", &config], vec![]),
    ];
    for (what, extra, envs) in cases {
        let out = run_command(&[&["config", "check"][..], &common, &extra].concat(), &envs)?;
        let text = output_text(&out);
        ensure!(out.status.success(), "{what}: config check failed:\n{text}");
        ensure_not_in(&text, &secret, what)?;
        ensure!(
            text.contains("REDACTED") || text.contains("kafka_sasl_password_file = "),
            "{what}: neither redacted nor the file shown:\n{text}"
        );
    }
    // Both a file and a sasl.password: refused, naming the two places, echoing neither.
    let out = Command::new(tailbox_bin()?)
        .args(["config", "check"])
        .args(common)
        .args(["--kafka-prop", &flag_password, "--kafka-sasl-password-file", &file])
        .output()?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(!out.status.success() && text.contains("one place") && text.contains("fix:"), "{text}");
    ensure_not_in(&text, &secret, "the refusal")
}

/// Polls `log` until it contains `needle`; returns the whole log.
fn wait_for_log(log: &Path, needle: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return Ok(text);
        }
        ensure!(Instant::now() < deadline, "no {needle:?} in the log within {timeout:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn first_line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or_default()
}
