//! `unitgen init [DIR]`: a commented starter spec, the JSON Schema its
//! first line points editors at, and a values file for the etcd keys it
//! reads. Every file is checked before any is written: one that exists
//! stops the command with nothing written.
//!
//! No `.gitignore`: everything unitgen puts in an ops repo belongs in git
//! (the spec, `units/` which CI compares, the values file, which holds no
//! secrets, the schema editors read, and `units/.unitgen-deployed`, which
//! other checkouts need), and a render's temp files are removed by the
//! next render and reported by `render --check` meanwhile. Writing one
//! would also make `init` refuse in every repo that already has one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cmd::cli::InitArgs;
use crate::cmd::report::report;
use crate::error::Error;

/// The starter spec; `tests/cli_commands.rs` checks that it validates and
/// renders, and the unit tests below that `VALUES` lists exactly its keys.
pub const STARTER: &str = include_str!("../../templates/init/unitgen.yaml");
/// The values file for [`STARTER`]'s etcd keys; secrets are `null`.
pub const VALUES: &str = include_str!("../../templates/init/values.yaml");

pub const SPEC_FILE: &str = "unitgen.yaml";
pub const SCHEMA_FILE: &str = "unitgen.schema.json";
pub const VALUES_FILE: &str = "values.yaml";

/// The spec's JSON Schema, as `unitgen schema` prints it (without the
/// final newline).
pub fn schema_text() -> String {
    let schema = schemars::schema_for!(crate::generate::spec::Spec);
    serde_json::to_string_pretty(&schema).expect("a schema serializes")
}

/// How a file in `dir` is named in messages: relative to the current
/// folder as the user gave it, without a leading `./`.
fn shown(dir: &Path, name: &str) -> PathBuf {
    if dir == Path::new(".") || dir.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

pub fn run(args: &InitArgs) -> Result<(), Error> {
    let dir = &args.dir;
    let files = [
        (SPEC_FILE, STARTER.to_owned()),
        (SCHEMA_FILE, format!("{}\n", schema_text())),
        (VALUES_FILE, VALUES.to_owned()),
    ];
    let mut existing = 0;
    for (name, _) in &files {
        let path = shown(dir, name);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {
                existing += 1;
                report(&Error::Output {
                    path,
                    message: "already exists; `unitgen init` never overwrites a file: move it \
                              away, or init another folder (`unitgen init DIR`)"
                        .into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path)(e)),
        }
    }
    if existing > 0 {
        // Like an invalid spec: nothing was done, and the fix is the user's.
        return Err(Error::Silent(2));
    }
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let mut written: Vec<PathBuf> = Vec::new();
    for (name, text) in &files {
        let path = shown(dir, name);
        if let Err(e) = create(&path, text) {
            // All or nothing: what this run wrote goes again.
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            return Err(e);
        }
        written.push(path);
    }
    let mut out = std::io::stdout().lock();
    // A closed pipe ends quietly, as every command's stdout does.
    let io = crate::cmd::term::stdout_error;
    for path in &written {
        writeln!(out, "{}", path.display()).map_err(io)?;
    }
    out.flush().map_err(io)?;
    let spec = shown(dir, SPEC_FILE);
    let values = shown(dir, VALUES_FILE);
    let file_flag = if spec == Path::new(SPEC_FILE) {
        String::new()
    } else {
        format!(" -f {}", spec.display())
    };
    // One line each: a line on stderr is escaped whole (term.rs).
    let (spec, values) = (spec.display(), values.display());
    crate::cmd::term::info(format_args!(
        "unitgen init: wrote a starter spec; edit {spec}, then run"
    ));
    crate::cmd::term::info(format_args!(
        "  unitgen validate{file_flag} --values {values}"
    ));
    crate::cmd::term::info(format_args!(
        "and, once it says ok, `unitgen render{file_flag} --values {values}` to write its units"
    ));
    Ok(())
}

/// Creates `path` with `text`; never replaces a file (one created since
/// the check is an error too).
fn create(path: &Path, text: &str) -> Result<(), Error> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(Error::io(path))?;
    f.write_all(text.as_bytes()).map_err(Error::io(path))?;
    f.sync_all().map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::source::Source;

    #[test]
    fn the_values_file_lists_exactly_the_starters_keys_and_no_secret_value() {
        let loaded = crate::generate::Loaded::new(Source::new(SPEC_FILE.into(), STARTER.into()));
        let refs = loaded.refs();
        let values: std::collections::BTreeMap<String, Option<String>> =
            serde_yaml::from_str(VALUES).unwrap();
        let keys: Vec<&String> = values.keys().collect();
        let wanted: Vec<&String> = refs.needs().keys().collect();
        assert_eq!(keys, wanted);
        for (key, value) in &values {
            assert_eq!(
                value.is_none(),
                refs.is_secret(key),
                "{key}: a secret is listed with null, a value with a value"
            );
        }
        assert!(refs.needs().len() >= 2, "the starter shows both kinds");
    }

    #[test]
    fn the_starter_points_editors_at_the_schema() {
        assert_eq!(
            STARTER.lines().next(),
            Some("# yaml-language-server: $schema=./unitgen.schema.json")
        );
    }
}
