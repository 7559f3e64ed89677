//! The configuration's behaviour as operators see it: precedence, errors, redaction.

use std::{collections::BTreeMap, ffi::OsString};

use clap::FromArgMatches;
use serde::Deserialize;

use super::*;
use crate::{cli::Cli, load::clap_error, options::DEFAULT_METRICS_ADDR};
use tailbox_pipeline::settings::DEFAULT_HEARTBEAT_SQL;

/// Parses `args` as `tailbox …` (with `file` as the config file) the way `main` does.
fn load_with(args: &[&str], file: Option<&str>) -> Result<Config, ConfigErrors> {
    load_from(crate::cli::command(), args, file)
}

fn load_from(
    cmd: clap::Command,
    args: &[&str],
    file: Option<&str>,
) -> Result<Config, ConfigErrors> {
    let io = |e: std::io::Error| ConfigErrors(vec![e.to_string()]);
    let mut argv: Vec<OsString> = vec!["tailbox".into()];
    let dir = std::env::temp_dir().join(format!(
        "tailbox-config-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    if let Some(text) = file {
        std::fs::create_dir_all(&dir).map_err(io)?;
        let path = dir.join("tailbox.toml");
        std::fs::write(&path, text).map_err(io)?;
        argv.push("--config".into());
        argv.push(path.into());
    }
    argv.extend(args.iter().map(OsString::from));
    let matches = cmd
        .try_get_matches_from(&argv)
        .map_err(|e| clap_error(&e, &argv).unwrap_or_else(|| ConfigErrors(vec![e.to_string()])))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
    let mut leaf = &matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    let given = Settings::new(cli.global.clone(), cli.command.options());
    let result = load(cli.config.as_deref(), &given, leaf);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn errors(result: Result<Config, ConfigErrors>) -> Vec<String> {
    match result {
        Ok(_) => vec![],
        Err(e) => e.0,
    }
}

#[test]
fn every_key_is_a_run_option_with_its_env_variable() {
    let cli = crate::cli::command();
    let Some(run) = cli.find_subcommand("run").cloned() else {
        panic!("no run subcommand");
    };
    for key in crate::options::keys() {
        let arg = run
            .get_arguments()
            .chain(cli.get_arguments())
            .find(|a| a.get_id().as_str() == key.name);
        let Some(arg) = arg else {
            panic!("key {} has no option", key.name);
        };
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        assert_eq!(env, Some(format!("TAILBOX_{}", key.name.to_ascii_uppercase())), "{}", key.name);
        assert_eq!(arg.get_long().map(|l| format!("--{l}")), Some(key.flag.clone()));
    }
    let settings: BTreeMap<String, toml::Value> =
        toml::Table::try_from(crate::options::defaults()).unwrap_or_default().into_iter().collect();
    for arg in run.get_arguments() {
        let id = arg.get_id().as_str();
        assert!(
            crate::options::key(id).is_some() || ["config", "help"].contains(&id),
            "option {id} is not a config key"
        );
        // A default clap fills in is the default of the file key too.
        if let Some(default) = arg.get_default_values().first() {
            assert!(settings.contains_key(id), "{id}'s default {default:?} is not a setting");
        }
    }
}

#[test]
fn defaults_apply() -> Result<(), ConfigErrors> {
    let c = load_with(&["run", "--pg-url", "postgres://u@h/db"], None)?;
    assert_eq!(c.slot, "tailbox");
    assert_eq!(c.max_in_flight, 10_000);
    assert_eq!(c.status_interval_ms, 1000);
    assert!(!c.dry_run);
    assert_eq!(c.heartbeat_interval(), None);
    assert_eq!(c.heartbeat_sql, DEFAULT_HEARTBEAT_SQL);
    assert_eq!(c.metrics_addr, DEFAULT_METRICS_ADDR.parse().ok());
    assert!(c.metrics_addr_is_default());
    assert_eq!(c.source("slot"), Source::Default);
    assert!(c.kafka().is_err(), "kafka_brokers has no default");
    Ok(())
}

#[test]
fn flag_beats_file_beats_default() -> Result<(), ConfigErrors> {
    let file = r#"
        pg_url = "postgres://u@h/db"
        slot = "from_file"
        publication = "pub_file"
        max_in_flight = 10
        dry_run = true
        metrics_addr = "127.0.0.1:9999"
        kafka_brokers = "k:9092"
        kafka_props = { "linger.ms" = 10, "acks" = "all" }
    "#;
    let c = load_with(
        &["run", "--slot", "from_flag", "--kafka-prop", "linger.ms=20", "--dry-run=false"],
        Some(file),
    )?;
    assert_eq!(c.slot, "from_flag");
    assert_eq!(c.source("slot"), Source::Flag);
    assert_eq!(c.publication, "pub_file");
    assert!(matches!(c.source("publication"), Source::File(_)));
    assert_eq!(c.max_in_flight, 10);
    assert!(!c.dry_run, "--dry-run=false beats the file");
    assert_eq!(c.metrics_addr, "127.0.0.1:9999".parse().ok());
    assert!(!c.metrics_addr_is_default());
    assert_eq!(c.status_interval_ms, 1000, "default");
    let props: BTreeMap<_, _> = c.kafka_props.iter().cloned().collect();
    assert_eq!(props.get("linger.ms").map(PropValue::expose), Some("20"), "flag wins per key");
    assert_eq!(props.get("acks").map(PropValue::expose), Some("all"), "file key kept");
    Ok(())
}

/// The environment sits between flags and the file.
#[test]
fn env_beats_file_and_flag_beats_env() -> Result<(), ConfigErrors> {
    let file = "pg_url = \"postgres://u@h/db\"\ncheckpoint_topic = \"file.cp\"\ndlq_topic = \"file.dlq\"\n";
    // Setting variables is unsafe in edition 2024 (other threads read the
    // environment), so point two options at a variable that is always set instead:
    // it stands in for a TAILBOX_* variable.
    let Some(value) = std::env::var_os("HOME").and_then(|v| v.into_string().ok()) else {
        return Ok(());
    };
    let cmd = crate::cli::command().mut_subcommand("run", |run| {
        run.mut_arg("checkpoint_topic", |a| a.env("HOME")).mut_arg("dlq_topic", |a| a.env("HOME"))
    });
    let c = match load_from(cmd, &["run", "--dlq-topic", "flag.dlq"], Some(file)) {
        Ok(c) => c,
        // HOME is not a valid topic name: the error names the variable.
        Err(errors) => {
            assert!(errors.0.iter().any(|l| l.contains("TAILBOX_CHECKPOINT_TOPIC")), "{errors:?}");
            return Ok(());
        }
    };
    assert_eq!(c.checkpoint_topic, value, "env beats the file");
    assert_eq!(c.source("checkpoint_topic"), Source::Env);
    assert_eq!(c.dlq_topic, "flag.dlq", "flag beats env");
    assert_eq!(c.source("dlq_topic"), Source::Flag);
    Ok(())
}

#[test]
fn unknown_file_keys_are_named_with_a_fix() {
    let errs = errors(load_with(
        &["run"],
        Some("pg_url = \"postgres://u@h/db\"\nkafka_broker = \"k:9092\"\n"),
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("unknown key \"kafka_broker\""), "{}", errs[0]);
    assert!(errs[0].contains("did you mean kafka_brokers?"), "{}", errs[0]);
    assert!(errs[0].contains("fix:"), "{}", errs[0]);
    let errs = errors(load_with(&["run"], Some("accept_slot_position = true\n")));
    assert!(
        errs[0].contains("accept_slot_position") && errs[0].contains("--accept-slot-position"),
        "{errs:?}"
    );
    let errs = errors(load_with(&["run"], Some("slot = [1, 2]\n")));
    assert!(errs[0].contains("slot") && errs[0].contains("fix:"), "{errs:?}");
    let errs = errors(load_with(&["run"], Some("slot = \n")));
    assert!(errs[0].contains("not valid TOML") && errs[0].contains("line 1"), "{errs:?}");
}

#[test]
fn every_invalid_value_gets_one_line_naming_field_value_and_fix() {
    let errs = errors(load_with(
        &[
            "run",
            "--pg-url",
            "postgres://u@h/db",
            "--max-in-flight",
            "0",
            "--status-interval-ms",
            "5",
            "--slot",
            "Bad-Slot",
            "--metrics-addr",
            "nowhere",
            "--heartbeat-interval-ms",
            "50",
        ],
        Some("dlq_topic = \"bad topic\"\nlog_format = \"yaml\"\n"),
    ));
    assert_eq!(errs.len(), 7, "{errs:#?}");
    for (needle, value) in [
        ("--max-in-flight", "\"0\""),
        ("--status-interval-ms", "\"5\""),
        ("--slot", "\"Bad-Slot\""),
        ("--metrics-addr", "\"nowhere\""),
        ("--heartbeat-interval-ms", "\"50\""),
        ("dlq_topic in ", "\"bad topic\""),
        ("log_format in ", "\"yaml\""),
    ] {
        let line = errs.iter().find(|l| l.contains(needle));
        assert!(
            line.is_some_and(|l| l.contains(value) && l.contains("fix:") && !l.contains('\n')),
            "{needle}: {errs:#?}"
        );
    }
}

/// A value of the wrong type is refused by clap (flags, environment) or serde (the
/// file); it becomes the same one line.
#[test]
fn values_of_the_wrong_type_get_one_line_naming_where_they_came_from() {
    let errs = errors(load_with(&["run", "--max-in-flight", "lots"], None));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("invalid --max-in-flight \"lots\": expected a whole number")
            && errs[0].contains("fix: e.g. --max-in-flight=10000"),
        "{errs:?}"
    );
    let errs = errors(load_with(&["run", "--sink=kafak"], None));
    assert!(
        errs.len() == 1
            && errs[0].contains("--sink \"kafak\": expected one of kafka, redis, webhook"),
        "{errs:?}"
    );
    let errs = errors(load_with(&["run", "--dry-run=perhaps"], None));
    assert!(errs.len() == 1 && errs[0].contains("--dry-run \"perhaps\""), "{errs:?}");
    // Not the flag's: the variable's (clap reads it only without the flag).
    let cmd = crate::cli::command()
        .mut_subcommand("run", |run| run.mut_arg("max_in_flight", |a| a.env("HOME")));
    let errs = errors(load_from(cmd, &["run"], None));
    assert!(errs.len() == 1 && errs[0].starts_with("invalid TAILBOX_MAX_IN_FLIGHT "), "{errs:?}");
    let errs = errors(load_with(
        &["run"],
        Some("max_in_flight = \"lots\"\nexactly_once = 1\nkafka_props = { a = [1] }\n"),
    ));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    for (needle, value) in [
        ("max_in_flight in ", "\"lots\""),
        ("exactly_once in ", " 1: "),
        ("kafka_props in ", "\"a\" = [1]"),
    ] {
        let line = errs.iter().find(|l| l.contains(needle));
        assert!(
            line.is_some_and(|l| l.contains(value) && l.contains("fix:")),
            "{needle}: {errs:#?}"
        );
    }
    // A number or boolean written as a string is still taken (as before).
    let c = load_with(&["run"], Some("max_in_flight = \"12\"\ndry_run = \"true\"\n"));
    assert!(c.as_ref().is_ok_and(|c| c.max_in_flight == 12 && c.dry_run), "{c:?}");
    // The file's other keys still apply, and their problems are reported with these.
    let errs = errors(load_with(&["run", "--slot", "Bad-Slot"], Some("max_in_flight = true\n")));
    assert_eq!(errs.len(), 2, "{errs:#?}");
}

#[test]
fn metrics_addr_empty_disables() -> Result<(), ConfigErrors> {
    let c = load_with(&["run", "--metrics-addr", ""], None)?;
    assert_eq!(c.metrics_addr, None);
    Ok(())
}

#[test]
fn redacts_secrets() -> Result<(), ConfigErrors> {
    let file = r#"
        pg_url = "postgres://app:hunter2@db:5432/shop?password=also&sslmode=disable"
        kafka_brokers = "k:9092"
        [kafka_props]
        "sasl.password" = "s3cr3t"
        "sasl.jaas.config" = "org.apache... password=\"x\";"
        "ssl.key.pem" = "-----BEGIN"
        "client.secret.value" = "abc"
        "linger.ms" = "10"
    "#;
    let c = load_with(&["config", "check"], Some(file))?;
    let text = c.render();
    for secret in ["hunter2", "also", "s3cr3t", "BEGIN", "abc", "org.apache"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert!(text.contains("postgres://app:REDACTED@db:5432/shop?sslmode=disable"), "{text}");
    assert!(!format!("{c:?}").contains("s3cr3t"), "Debug shows no secret");
    assert!(text.contains("\"linger.ms\" = \"10\""), "{text}");
    assert!(text.contains("slot = \"tailbox\"  # default"), "{text}");
    // The rendered config is itself a valid config file.
    let reparsed = text.replace(REDACTED, "x").parse::<toml::Table>();
    let reparsed = reparsed.map(|t| Settings::deserialize(t).map(|_| ()));
    assert!(matches!(reparsed, Ok(Ok(()))), "{reparsed:?}\n{text}");
    Ok(())
}

#[test]
fn shows_tls_paths_and_every_host_but_no_password() -> Result<(), ConfigErrors> {
    let url = "postgres://app:pw@db1:5432,db2:5433/shop?target_session_attrs=read-write&sslmode=prefer&sslrootcert=/etc/ca.crt";
    let c = load_with(&["config", "check", "--pg-url", url], None)?;
    let text = c.render();
    assert!(
        text.contains(&format!(
            "pg_url = \"postgres://app:{REDACTED}@db1:5432,db2:5433/shop?target_session_attrs=read-write&sslmode=prefer&sslrootcert=/etc/ca.crt\""
        )),
        "{text}"
    );
    let c = load_with(&["run", "--pg-url", "host=db user=app password='a b' dbname=x"], None)?;
    let text = c.render();
    assert!(!text.contains("a b") && text.contains("app:REDACTED@db/x"), "{text}");
    let errs =
        errors(load_with(&["run", "--pg-url", "postgres://u:hunter2@h/db?sslpassword=k3y"], None));
    assert!(
        errs.len() == 1 && errs[0].contains("--pg-url") && errs[0].contains("fix:"),
        "{errs:?}"
    );
    assert!(!errs[0].contains("hunter2") && !errs[0].contains("k3y"), "{errs:?}");
    Ok(())
}

#[test]
fn library_fields_become_flags() {
    assert_eq!(
        name_fields("then start once with `accept_slot_position`; `slot` and `nonesuch`"),
        "then start once with --accept-slot-position (TAILBOX_ACCEPT_SLOT_POSITION); \
         --slot (TAILBOX_SLOT, slot in the config file) and `nonesuch`"
    );
}

#[test]
fn password_file_goes_into_the_url() -> Result<(), ConfigErrors> {
    let dir = std::env::temp_dir().join(format!("tailbox-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
    let pw = dir.join("pw");
    std::fs::write(&pw, "p@ss:w/rd\n").map_err(|e| ConfigErrors(vec![e.to_string()]))?;
    let pw = pw.to_string_lossy().into_owned();
    let c = load_with(
        &["run", "--pg-url", "postgres://app@db:5432/shop", "--pg-password-file", &pw],
        None,
    )?;
    assert!(c.pg()?.has_password(), "the file's password is set");
    assert!(!c.render().contains("p@ss") && !c.render().contains("p%40ss"));
    assert!(!format!("{c:?}").contains("p@ss"), "Debug shows no secret");
    let errs = errors(load_with(
        &["run", "--pg-url", "postgres://app:x@db/shop", "--pg-password-file", &pw],
        None,
    ));
    assert!(errs.len() == 1 && errs[0].contains("one place"), "{errs:?}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn kafka_sasl_password_file_sets_sasl_password_and_is_never_shown() -> Result<(), ConfigErrors> {
    let dir = std::env::temp_dir().join(format!("tailbox-kpw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
    let pw = dir.join("pw");
    std::fs::write(&pw, "k@fka,pa=ss\n").map_err(|e| ConfigErrors(vec![e.to_string()]))?;
    let pw = pw.to_string_lossy().into_owned();
    let args = [
        "run",
        "--kafka-brokers",
        "k:9093",
        "--kafka-prop",
        "security.protocol=SASL_SSL",
        "--kafka-prop",
        "sasl.mechanism=SCRAM-SHA-256",
        "--kafka-prop",
        "sasl.username=tailbox",
        "--kafka-sasl-password-file",
        &pw,
    ];
    let c = load_with(&args, None)?;
    let kafka = c.kafka()?;
    assert!(
        kafka.properties.contains(&("sasl.password".into(), "k@fka,pa=ss".into())),
        "{:?}",
        kafka.properties.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    assert!(c.kafka_sasl_password_from_file);
    assert!(check_kafka_props(&kafka).is_ok());
    let text = c.render();
    assert!(!text.contains("k@fka"), "{text}");
    assert!(text.contains(&format!("kafka_sasl_password_file = \"{pw}\"")), "{text}");
    assert!(
        text.contains("# \"sasl.password\" = \"REDACTED\"  # from kafka_sasl_password_file"),
        "{text}"
    );
    // In the file too, and both places at once is refused without echoing either.
    let c = load_with(
        &["run", "--kafka-brokers", "k:9093"],
        Some(&format!("kafka_sasl_password_file = \"{pw}\"\n")),
    )?;
    assert!(c.kafka()?.properties.iter().any(|(k, _)| k == "sasl.password"));
    let errs = errors(load_with(
        &[&args[..], &["--kafka-prop", "sasl.password=other-S3cret"]].concat(),
        None,
    ));
    assert!(errs.len() == 1 && errs[0].contains("one place"), "{errs:?}");
    assert!(!errs[0].contains("k@fka") && !errs[0].contains("S3cret"), "{errs:?}");
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").map_err(|e| ConfigErrors(vec![e.to_string()]))?;
    let errs =
        errors(load_with(&["run", "--kafka-sasl-password-file", &empty.to_string_lossy()], None));
    assert!(errs.len() == 1 && errs[0].contains("empty"), "{errs:?}");
    let errs = errors(load_with(&["run", "--kafka-sasl-password-file", "/nonexistent/pw"], None));
    assert!(errs.len() == 1 && errs[0].contains("cannot read"), "{errs:?}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn kafka_secret_props_are_recognised() {
    for key in [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "ssl_key",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.jaas.config",
    ] {
        assert!(is_secret_prop(key), "{key}");
    }
    for key in [
        "sasl.username",
        "sasl.mechanism",
        "security.protocol",
        "ssl.ca.location",
        "ssl.key.location",
        "ssl.keystore.location",
        "ssl.certificate.location",
        "ssl.endpoint.identification.algorithm",
    ] {
        assert!(!is_secret_prop(key), "{key}");
    }
}

#[test]
fn edit_distance_works() {
    use crate::load::closest_key;
    assert_eq!(strsim::levenshtein("slto", "slot"), 2);
    assert_eq!(closest_key("kafka_broker"), Some("kafka_brokers"));
    assert_eq!(closest_key("zzzzzzzzzz"), None);
}
