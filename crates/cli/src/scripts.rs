//! What `tailbox setup` and `tailbox teardown` change in PostgreSQL: they run the
//! plain-SQL part of sql/02_publication.sql, sql/03_slot.sql and sql/99_teardown.sql
//! (built into the binary) on a control connection, so the scripts users run with psql
//! and these commands cannot drift apart; and the splitter that cuts a script into
//! statements.

use tailbox_replication::{ControlClient, ReplicationError, control::quote_identifier};

use crate::catalog::pg_error;

/// `sql/02_publication.sql`: creates the publication if missing.
pub const PUBLICATION_SQL: &str = include_str!("../../../sql/02_publication.sql");
/// `sql/03_slot.sql`: creates the slot if missing.
pub const SLOT_SQL: &str = include_str!("../../../sql/03_slot.sql");
/// `sql/99_teardown.sql`: drops the slot and the publication if present.
pub const TEARDOWN_SQL: &str = include_str!("../../../sql/99_teardown.sql");

/// The comment line in each `sql/` script after which plain SQL follows: psql runs the whole
/// file (its `\if`/`SET … = :'var'` lines set the `tailbox.*` settings from psql
/// variables); tailbox sets the same settings with `set_config` and runs only what
/// follows this line. One copy of the SQL, two ways to run it.
pub const SCRIPT_BODY_MARKER: &str = "-- tailbox:plain-sql";

/// The statements of a `sql/` script that tailbox runs itself: everything after
/// [`SCRIPT_BODY_MARKER`], split into statements (comments dropped). `None` if the
/// script has no marker.
pub fn script_statements(script: &str) -> Option<Vec<String>> {
    let start = script.find(SCRIPT_BODY_MARKER)?;
    // The marker line is a comment to its end.
    let body = script[start..].split_once('\n').map_or("", |(_, body)| body);
    Some(split_sql(body))
}

/// Splits SQL text into statements at `;` outside quotes, dollar quotes and comments.
/// Enough for the scripts in `sql/` (which psql runs too); not a general SQL lexer.
pub fn split_sql(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut dollar_tag: Option<String> = None;
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if let Some(tag) = &dollar_tag {
            current.push(c);
            if c == '$' && current.ends_with(tag.as_str()) {
                dollar_tag = None;
            }
            continue;
        }
        if in_string {
            current.push(c);
            if c == '\'' {
                in_string = false;
            }
            continue;
        }
        match c {
            '-' if chars.peek() == Some(&'-') => {
                // A comment: skip to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            '\'' => {
                in_string = true;
                current.push(c);
            }
            '$' => {
                // $tag$ … $tag$ (tag possibly empty).
                let mut tag = String::from("$");
                let mut lookahead = chars.clone();
                let mut closed = false;
                for n in lookahead.by_ref() {
                    tag.push(n);
                    if n == '$' {
                        closed = true;
                        break;
                    }
                    if !(n.is_ascii_alphanumeric() || n == '_') {
                        break;
                    }
                }
                if closed {
                    for _ in 1..tag.len() {
                        chars.next();
                    }
                    current.push_str(&tag);
                    dollar_tag = Some(tag);
                } else {
                    current.push(c);
                }
            }
            ';' => {
                let statement = current.trim();
                if !statement.is_empty() {
                    statements.push(statement.to_owned());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    let statement = current.trim();
    if !statement.is_empty() {
        statements.push(statement.to_owned());
    }
    statements
}

/// What `setup`/`teardown` did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It was created (setup) or dropped (teardown).
    Done,
    /// Nothing to do: it already existed (setup) or was already absent (teardown).
    AlreadyThere,
}

/// Creates the publication for `outbox_table` (`schema.table`) unless it exists,
/// running the statements of `sql/02_publication.sql`.
pub async fn create_publication(
    control: &ControlClient,
    publication: &str,
    schema: &str,
    table: &str,
) -> Result<Change, ReplicationError> {
    let existed = crate::catalog::publication_report(control, publication).await?.is_some();
    let qualified = format!("{}.{}", quote_identifier(schema), quote_identifier(table));
    run_script(
        control,
        "sql/02_publication.sql",
        PUBLICATION_SQL,
        &[("tailbox.publication", publication), ("tailbox.outbox_table", &qualified)],
    )
    .await
    .map_err(|e| {
        setup_problem(e, &format!("creating publication {publication:?} for {schema}.{table}"))
    })?;
    Ok(if existed { Change::AlreadyThere } else { Change::Done })
}

/// Creates the logical slot (plugin pgoutput) unless it exists, running the
/// statements of `sql/03_slot.sql`; with `failover`, a failover slot (PostgreSQL 17+;
/// the script refuses older servers, and an existing slot that is not one).
pub async fn create_slot(
    control: &ControlClient,
    slot: &str,
    failover: bool,
) -> Result<Change, ReplicationError> {
    let existed = crate::catalog::slot_report(control, slot).await?.is_some();
    let failover = if failover { "true" } else { "false" };
    run_script(
        control,
        "sql/03_slot.sql",
        SLOT_SQL,
        &[("tailbox.slot", slot), ("tailbox.failover", failover)],
    )
    .await
    .map_err(|e| setup_problem(e, &format!("creating replication slot {slot:?}")))?;
    Ok(if existed { Change::AlreadyThere } else { Change::Done })
}

/// Drops the slot and the publication if present, running the statements of
/// `sql/99_teardown.sql`. A slot held by a running tailbox is refused.
pub async fn drop_slot_and_publication(
    control: &ControlClient,
    slot: &str,
    publication: &str,
) -> Result<(Change, Change), ReplicationError> {
    let slot_report = crate::catalog::slot_report(control, slot).await?;
    if let Some(report) = &slot_report
        && report.active
    {
        return Err(ReplicationError::startup(
            format!(
                "replication slot {slot:?} is in use by PID {}",
                report.active_pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
            ),
            "stop the tailbox (or other client) streaming from it, then run teardown again",
        ));
    }
    let publication_existed =
        crate::catalog::publication_report(control, publication).await?.is_some();
    run_script(
        control,
        "sql/99_teardown.sql",
        TEARDOWN_SQL,
        &[("tailbox.slot", slot), ("tailbox.publication", publication)],
    )
    .await
    .map_err(|e| {
        setup_problem(e, &format!("dropping slot {slot:?} and publication {publication:?}"))
    })?;
    let change = |existed: bool| {
        if existed { Change::Done } else { Change::AlreadyThere }
    };
    Ok((change(slot_report.is_some()), change(publication_existed)))
}

/// Sets `settings` (session-level) and runs the plain-SQL part of `script`.
async fn run_script(
    control: &ControlClient,
    name: &str,
    script: &str,
    settings: &[(&str, &str)],
) -> Result<(), ReplicationError> {
    let Some(statements) = script_statements(script) else {
        return Err(ReplicationError::startup(
            format!("{name} has no {SCRIPT_BODY_MARKER:?} line"),
            "restore the file from the tailbox release",
        ));
    };
    for (key, value) in settings {
        control
            .client()
            .execute("SELECT set_config($1, $2, false)", &[key, value])
            .await
            .map_err(|e| pg_error(format!("setting {key}"), e))?;
    }
    for statement in statements {
        control
            .client()
            .batch_execute(&statement)
            .await
            .map_err(|e| pg_error(format!("running {name}"), e))?;
    }
    Ok(())
}

/// Turns a server refusal during setup/teardown into a problem with a fix.
fn setup_problem(err: ReplicationError, what: &str) -> ReplicationError {
    let (message, code, hint) = match &err {
        ReplicationError::Definite { source, .. } | ReplicationError::Transient { source, .. } => {
            match source.downcast_ref::<tokio_postgres::Error>() {
                Some(pg) => match pg.as_db_error() {
                    Some(db) => (
                        db.message().to_owned(),
                        db.code().code().to_owned(),
                        db.hint().map(str::to_owned),
                    ),
                    None => return err,
                },
                None => return err,
            }
        }
        ReplicationError::Startup(_) | ReplicationError::SlotInUse { .. } => return err,
    };
    // The scripts' own refusals (sql/03_slot.sql's failover checks) carry their fix.
    if let Some(hint) = hint {
        return ReplicationError::startup(format!("{what}: {message} (SQLSTATE {code})"), hint);
    }
    let fix = match code.as_str() {
        "42501" => {
            "run setup/teardown as a superuser or the outbox table's owner with REPLICATION (e.g. `pg_url` postgres://postgres@HOST/DB); tailbox run itself only needs the role of sql/04_role.sql"
        }
        "42P01" => {
            "create the outbox table first (sql/01_outbox_table.sql), or point outbox_table at yours"
        }
        "55000" => "set wal_level = logical in postgresql.conf and restart PostgreSQL",
        "53400" => "raise max_replication_slots (restart required) or drop an unused slot",
        "55006" => "stop the client streaming from the slot, then try again",
        "25006" => {
            "this server is a standby (read-only): create the publication on the primary (sql/02_publication.sql or `tailbox setup` there); the slot for decoding on this standby is then created here"
        }
        _ => "see the PostgreSQL error above",
    };
    ReplicationError::startup(format!("{what}: {message} (SQLSTATE {code})"), fix)
}

#[cfg(test)]
mod script_tests {
    use super::*;

    #[test]
    fn splits_statements_outside_quotes_and_dollar_quotes() {
        let sql = "-- a comment; with a semicolon\nSELECT 'a;b';\nDO $$ BEGIN PERFORM 1; END $$;\n\
                   DO $body$ BEGIN RAISE NOTICE '$$;'; END $body$;\nSELECT $1";
        let statements = split_sql(sql);
        assert_eq!(
            statements,
            vec![
                "SELECT 'a;b'",
                "DO $$ BEGIN PERFORM 1; END $$",
                "DO $body$ BEGIN RAISE NOTICE '$$;'; END $body$",
                "SELECT $1",
            ]
        );
    }

    /// The scripts users run with psql and the statements `tailbox setup`/`teardown`
    /// run are the same file: each has the marker, plain SQL after it, and uses the
    /// `tailbox.*` settings that both ways set.
    #[test]
    fn sql_scripts_have_a_plain_sql_body() {
        for (name, script, settings) in [
            (
                "02_publication.sql",
                PUBLICATION_SQL,
                &["tailbox.publication", "tailbox.outbox_table"][..],
            ),
            ("03_slot.sql", SLOT_SQL, &["tailbox.slot", "tailbox.failover"][..]),
            ("99_teardown.sql", TEARDOWN_SQL, &["tailbox.slot", "tailbox.publication"][..]),
        ] {
            let statements = script_statements(script);
            let Some(statements) = statements else {
                panic!("{name} lacks the {SCRIPT_BODY_MARKER:?} line");
            };
            assert!(!statements.is_empty(), "{name}");
            for statement in &statements {
                assert!(
                    !statement.contains(":'") && !statement.contains('\\'),
                    "{name}: psql-only syntax after the marker: {statement}"
                );
            }
            let body = statements.join(";\n");
            for setting in settings {
                assert!(body.contains(setting), "{name} does not read {setting}");
                let psql_part = script.split(SCRIPT_BODY_MARKER).next().unwrap_or_default();
                assert!(
                    psql_part.contains(&format!("SET {setting} = :'")),
                    "{name}: psql does not set {setting}"
                );
            }
        }
    }
}
