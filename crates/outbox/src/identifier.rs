//! PostgreSQL identifiers as users write them: `outbox`, `"Outbox"`, `app."My Table"`,
//! `"My Schema"."Out.box"` (as copied from psql), turned into the names the catalogs
//! hold.
//!
//! Rules, as in PostgreSQL: a double-quoted part is taken exactly (`""` stands for one
//! `"`; a `.` inside quotes belongs to the name); dots outside quotes separate parts.
//! An unquoted part is folded to lower case, as PostgreSQL folds it: `App.Outbox` is the
//! table `CREATE TABLE App.Outbox` made, `app.outbox`; the table `"App"."Outbox"` is
//! written `'"App"."Outbox"'`, as psql shows it. (tailbox before 2026-11 matched unquoted
//! names as written; the startup check names the quoted form when only that exists.)

/// One part of a dotted name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    text: String,
    quoted: bool,
}

/// Splits `text` at dots outside double quotes; `Err` says what is wrong.
fn split(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = Part { text: String::new(), quoted: false };
        if chars.peek() == Some(&'"') {
            chars.next();
            part.quoted = true;
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.text.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.text.push(c),
                    None => return Err("a double quote is not closed".into()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '"' {
                    return Err("a double quote in the middle of a name".into());
                }
                part.text.push(c);
                chars.next();
            }
        }
        if part.text.is_empty() {
            return Err("an empty name".into());
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => {}
            Some(c) => return Err(format!("{c:?} after a quoted name (expected '.' or the end)")),
        }
    }
}

/// A single name (publication, slot): quoted → exact; unquoted → lower case.
pub fn parse_name(text: &str) -> Result<String, String> {
    let parts = split(text)?;
    match parts.as_slice() {
        [part] if part.quoted => Ok(part.text.clone()),
        [part] => Ok(part.text.to_lowercase()),
        _ => Err("expected one name; put a name containing '.' in double quotes".into()),
    }
}

/// `schema.table` or `table` (schema `public`): quoted parts exact, unquoted ones in
/// lower case (see the module docs).
pub fn parse_table(text: &str) -> Result<(String, String), String> {
    let parts = split(text)?;
    let name = |part: &Part| if part.quoted { part.text.clone() } else { part.text.to_lowercase() };
    match parts.as_slice() {
        [table] => Ok(("public".to_owned(), name(table))),
        [schema, table] => Ok((name(schema), name(table))),
        _ => {
            Err("expected SCHEMA.TABLE or TABLE; put a name containing '.' in double quotes".into())
        }
    }
}

/// `name` as an SQL identifier, always quoted (so case and any character survive).
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> (String, String) {
        parse_table(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn pair(schema: &str, table: &str) -> (String, String) {
        (schema.to_owned(), table.to_owned())
    }

    #[test]
    fn tables_quoted_or_not() {
        assert_eq!(table("outbox"), pair("public", "outbox"));
        assert_eq!(table("app.events"), pair("app", "events"));
        assert_eq!(table("App.Outbox"), pair("app", "outbox"), "unquoted folds, as in psql");
        assert_eq!(table("\"App\".\"Outbox\""), pair("App", "Outbox"));
        assert_eq!(table("\"My Schema\".\"Out.box\""), pair("My Schema", "Out.box"));
        assert_eq!(table("\"Out.box\""), pair("public", "Out.box"));
        assert_eq!(table("app.\"Say \"\"hi\"\"\""), pair("app", "Say \"hi\""));
        assert_eq!(table(" \"App\".Outbox "), pair("App", "outbox"));
    }

    #[test]
    fn malformed_tables_are_refused() {
        for bad in ["", "a..b", ".a", "a.", "a.b.c", "\"a", "a\"b\".c", "\"a\"b.c", "\"\".t"] {
            assert!(parse_table(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_fold_unless_quoted() {
        assert_eq!(parse_name("tailbox"), Ok("tailbox".into()));
        assert_eq!(parse_name("MyPub"), Ok("mypub".into()));
        assert_eq!(parse_name("\"Pub-1\""), Ok("Pub-1".into()));
        assert_eq!(parse_name("\"a.b\""), Ok("a.b".into()));
        assert!(parse_name("a.b").is_err());
        assert!(parse_name("\"\"").is_err());
    }

    #[test]
    fn quoting_round_trips() {
        for name in ["Pub-1", "a\"b", "My Schema", "out.box"] {
            assert_eq!(parse_name(&quote(name)), Ok(name.to_owned()));
        }
    }
}
