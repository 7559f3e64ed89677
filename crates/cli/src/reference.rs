//! The configuration reference (`docs/configuration.md`), generated from the command
//! line definitions so it cannot drift: a test compares the file with what this module
//! renders, and `TAILBOX_BLESS=1 cargo test -p tailbox-cli reference` rewrites it.

use std::fmt::Write;

/// Renders the reference: one table per subcommand, one row per option, with its flag,
/// environment variable, config-file key, default and help.
pub fn render() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the option definitions (`crates/cli/src/options.rs`, `cli.rs`); a test fails\n\
         when this file and the definitions disagree. Regenerate with\n\
         `TAILBOX_BLESS=1 cargo test -p tailbox-cli reference`.\n\n\
         Every option of `run` can be given as a flag, as the environment variable beside it,\n\
         or as the key in a TOML file (`--config FILE`); precedence is\n\
         flag > environment > file > default. See [operations](operations.md).\n",
    );
    let command = crate::cli::command();
    render_command(&mut out, "tailbox", &command);
    out
}

fn render_command(out: &mut String, path: &str, command: &clap::Command) {
    let args: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_long().is_some_and(|l| l != "help" && l != "version"))
        .collect();
    if !args.is_empty() {
        let about = command.get_about().map(|a| a.to_string()).unwrap_or_default();
        let _ = write!(
            out,
            "\n## `{path}`\n\n{about}\n\n| flag | environment | file key | default | meaning |\n|---|---|---|---|---|\n"
        );
        for arg in args {
            let long = arg.get_long().unwrap_or_default();
            let env =
                arg.get_env().map(|e| format!("`{}`", e.to_string_lossy())).unwrap_or_default();
            let key = crate::options::key(arg.get_id().as_str()).filter(|k| k.in_file);
            let key = key.map(|k| format!("`{}`", k.name)).unwrap_or_default();
            let default = arg
                .get_default_values()
                .iter()
                .map(|v| format!("`{}`", v.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(", ");
            let help = arg
                .get_help()
                .map(|h| h.to_string())
                .unwrap_or_default()
                .replace('|', "\\|")
                .replace('\n', " ");
            let _ = writeln!(out, "| `--{long}` | {env} | {key} | {default} | {help} |");
        }
    }
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        render_command(out, &format!("{path} {}", sub.get_name()), sub);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn reference_is_up_to_date() -> std::io::Result<()> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let rendered = render();
        if std::env::var_os("TAILBOX_BLESS").is_some() {
            std::fs::write(&path, &rendered)?;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/configuration.md is out of date; run TAILBOX_BLESS=1 cargo test -p tailbox-cli reference"
        );
        Ok(())
    }
}
