//! Reading the config file: TOML syntax first (a syntax error is reported alone, with its line and column), then every unknown key and every bad value, each once, with its dotted path.
//!
//! serde stops at the first bad value, so the file is deserialized again after each one with
//! that value removed (its field then takes its default, and is remembered as invalid so the
//! checks that depend on it stay quiet). Removing an element shifts the ones after it; paths
//! are mapped back to the file's own indices before they are shown.

use serde::Deserialize;

use super::{
    schema::Config,
    secret,
    value::{Problem, ValueDe},
};

/// One step of a key path: a table key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// What the file gave, past its syntax.
pub(super) struct FileConfig {
    pub config: Config,
    /// Dotted paths of values that were present but unusable.
    pub invalid: Vec<String>,
    /// Values written under secret keys, whatever their type: no message may contain them.
    pub secrets: Vec<String>,
}

/// The file as a TOML table. The error is one line: the parser's message and where, but not
/// the offending source line, which may hold a key.
pub(super) fn table(text: &str) -> Result<toml::Table, String> {
    text.parse::<toml::Table>().map_err(|e| {
        let message = e.message().trim();
        match e.span() {
            Some(span) => {
                let (line, column) = position(text, span.start);
                format!("config is not valid TOML: line {line}, column {column}: {message}")
            }
            None => format!("config is not valid TOML: {message}"),
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

enum Found {
    Unknown(Vec<Seg>),
    Invalid(Vec<Seg>, Problem),
}

/// Deserializes `table` into a [`Config`], appending one message per unknown key and per bad
/// value to `errors`, in the file's order.
pub(super) fn config(table: toml::Table, errors: &mut Vec<String>) -> FileConfig {
    let secrets = secrets_in(&table);
    let mut root = toml::Value::Table(table);
    let mut removals = Removals::default();
    let mut found: Vec<Found> = Vec::new();
    let mut config = None;
    // Each failed attempt removes at least one node, so this many attempts always suffice.
    for _ in 0..=nodes(&root) {
        let mut track = serde_path_to_error::Track::new();
        let mut ignored: Vec<Vec<Seg>> = Vec::new();
        let mut note = |path: serde_ignored::Path<'_>| ignored.push(from_ignored(&path));
        let result = Config::deserialize(serde_ignored::Deserializer::new(
            serde_path_to_error::Deserializer::new(ValueDe(root.clone()), &mut track),
            &mut note,
        ));
        for path in ignored {
            let path = removals.original(&path);
            if !found.iter().any(|f| matches!(f, Found::Unknown(p) if *p == path)) {
                found.push(Found::Unknown(path));
            }
        }
        let problem = match result {
            Ok(parsed) => {
                config = Some(parsed);
                break;
            }
            Err(problem) => problem,
        };
        let current = from_track(&track.path());
        let original = removals.original(&current);
        let mut shown = original.clone();
        if let Problem::Missing(field) = &problem {
            shown.push(Seg::Key((*field).to_owned()));
        }
        // A value already reported, seen again from its parent (a missing field after the bad
        // one was removed), is the same problem.
        let again = found
            .iter()
            .any(|f| matches!(f, Found::Invalid(p, _) if p.starts_with(&shown)));
        if !again {
            found.push(Found::Invalid(shown, problem));
        }
        if !removals.remove(&mut root, &current, &original) {
            break;
        }
    }
    let mut invalid = Vec::new();
    for item in found {
        match item {
            Found::Unknown(path) => errors.push(format!("{}: unknown key", render(&path))),
            Found::Invalid(path, problem) => {
                let shown = render(&path);
                errors.push(format!("{shown}: {}", problem.describe(is_secret(&path))));
                invalid.push(shown);
            }
        }
    }
    FileConfig {
        config: config.unwrap_or_default(),
        invalid,
        secrets,
    }
}

/// Whether `path` is, or is inside, one of [`secret::SECRET_KEYS`].
fn is_secret(path: &[Seg]) -> bool {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|seg| match seg {
            Seg::Key(key) => Some(key.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let shape = keys.join(".");
    secret::SECRET_KEYS
        .iter()
        .any(|key| shape == *key || shape.strip_prefix(key).is_some_and(|rest| rest.starts_with('.')))
}

/// Every string written under a secret key (and the password inside a URL), to scrub.
fn secrets_in(table: &toml::Table) -> Vec<String> {
    fn walk(value: &toml::Value, path: &mut Vec<Seg>, secret: bool, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    path.push(Seg::Key(key.clone()));
                    let inside = secret || is_secret(path);
                    walk(value, path, inside, out);
                    path.pop();
                }
            }
            toml::Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk(value, path, secret, out);
                    path.pop();
                }
            }
            toml::Value::String(text) if secret => secret::collect(text, out),
            other if secret => secret::collect(&other.to_string(), out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (key, value) in table {
        let mut path = vec![Seg::Key(key.clone())];
        let secret = is_secret(&path);
        walk(value, &mut path, secret, &mut out);
    }
    out
}

fn nodes(value: &toml::Value) -> usize {
    1 + match value {
        toml::Value::Table(table) => table.values().map(nodes).sum(),
        toml::Value::Array(items) => items.iter().map(nodes).sum(),
        _ => 0,
    }
}

/// `server.listen`, `auth.keys[1].name`, `rate_limits.models."meta-llama/llama-4"`.
fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if bare {
                    out.push_str(key);
                } else {
                    out.push_str(&format!("{key:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() { "config".to_owned() } else { out }
}

fn from_track(path: &serde_path_to_error::Path) -> Vec<Seg> {
    let mut out = Vec::new();
    for seg in path.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => out.push(Seg::Key(key.clone())),
            // No node of the file stands for these: the path ends at the value holding them.
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => break,
        }
    }
    out
}

fn from_ignored(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut out = from_ignored(parent);
            out.push(Seg::Index(*index));
            out
        }
        Path::Map { parent, key } => {
            let mut out = from_ignored(parent);
            out.push(Seg::Key(key.clone()));
            out
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            from_ignored(parent)
        }
    }
}

/// List elements removed so far, by the file's own path of the list and index.
#[derive(Default)]
struct Removals {
    elements: Vec<(Vec<Seg>, usize)>,
}

impl Removals {
    /// A path in the current (pruned) tree as a path in the file.
    fn original(&self, current: &[Seg]) -> Vec<Seg> {
        let mut out = Vec::with_capacity(current.len());
        for seg in current {
            match seg {
                Seg::Index(i) => {
                    let mut gone: Vec<usize> = self
                        .elements
                        .iter()
                        .filter(|(list, _)| *list == out)
                        .map(|(_, index)| *index)
                        .collect();
                    gone.sort_unstable();
                    let mut index = *i;
                    for g in gone {
                        if g <= index {
                            index += 1;
                        }
                    }
                    out.push(Seg::Index(index));
                }
                key => out.push(key.clone()),
            }
        }
        out
    }

    /// Removes the node at `current` (or, if there is none, its nearest ancestor). False when
    /// only the root is left, which cannot be removed.
    fn remove(&mut self, root: &mut toml::Value, current: &[Seg], original: &[Seg]) -> bool {
        let Some((last, parent)) = current.split_last() else {
            return false;
        };
        let original_parent = original.get(..parent.len()).unwrap_or(&[]);
        let removed = match (walk_mut(root, parent), last) {
            (Some(toml::Value::Table(table)), Seg::Key(key)) => table.remove(key).is_some(),
            (Some(toml::Value::Array(items)), Seg::Index(i)) if *i < items.len() => {
                items.remove(*i);
                if let Some(Seg::Index(index)) = original.last() {
                    self.elements.push((original_parent.to_vec(), *index));
                }
                true
            }
            _ => false,
        };
        removed || self.remove(root, parent, original_parent)
    }
}

fn walk_mut<'a>(mut value: &'a mut toml::Value, path: &[Seg]) -> Option<&'a mut toml::Value> {
    for seg in path {
        value = match (value, seg) {
            (toml::Value::Table(table), Seg::Key(key)) => table.get_mut(key)?,
            (toml::Value::Array(items), Seg::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let mut errors = Vec::new();
        match table(text) {
            Ok(t) => {
                config(t, &mut errors);
            }
            Err(e) => errors.push(e),
        }
        errors
    }

    #[test]
    fn every_problem_once_with_its_path_in_file_order() {
        let text = r#"
            [upstream]
            api_keys = "gsk_canary_secret"
            [auth]
            mode = "keyz"
            [bogus_section]
            x = 1
            [server]
            max_connections = "abc"
            drain_timeout = 5
        "#;
        assert_eq!(
            problems(text),
            [
                "upstream.api_keys: expected a list of strings, found a string",
                "auth.mode: expected one of \"none\", \"keys\", \"passthrough\", found \"keyz\"",
                "bogus_section: unknown key",
                "server.max_connections: expected a whole number, found a string",
                "server.drain_timeout: expected a duration such as \"10s\" or \"250ms\", found an integer",
            ]
        );
    }

    #[test]
    fn list_elements_keep_their_own_index() {
        let text = r#"
            [upstream]
            api_keys = [1, "gsk_ok", 2.5]
            [auth]
            mode = "keys"
            [[auth.keys]]
            name = 7
            sha256 = "00"
            [[auth.keys]]
            name = "fine"
            [[auth.keys]]
            nmae = "typo"
            name = "b"
            sha256 = "11"
            surplus = true
        "#;
        assert_eq!(
            problems(text),
            [
                "upstream.api_keys[0]: expected a string, found an integer",
                "upstream.api_keys[2]: expected a string, found a float",
                "auth.keys[0].name: expected a string, found an integer",
                "auth.keys[1].sha256: required, but not set",
                "auth.keys[2].nmae: unknown key",
                "auth.keys[2].surplus: unknown key",
            ]
        );
    }

    #[test]
    fn syntax_errors_come_alone_with_a_position_and_without_the_line() {
        for (text, line) in [
            (
                "[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\napi_key = \"gsk_canary_secret\n",
                4,
            ),
            ("[upstream]\napi_key = gsk_canary_secret\n", 2),
            ("[upstream]\n\napi_key = \"gsk_canary\\qsecret\"\n", 3),
            (
                "[upstream]\napi_key = \"gsk_canary_secret\"\napi_key = \"gsk_canary_secret\"\n",
                3,
            ),
        ] {
            let all = problems(text);
            assert_eq!(all.len(), 1, "{all:?}");
            assert!(all[0].contains(&format!("line {line},")), "{all:?}");
            assert!(!all[0].contains("canary"), "{all:?}");
        }
    }

    #[test]
    fn no_secret_value_in_any_message_whatever_its_type() {
        for secret in [
            "upstream.api_key = \"gsk_canary_secret\"\n[upstream.x]",
            "[upstream]\napi_key = 12345678901",
            "[upstream]\napi_key = [\"gsk_canary_secret\"]",
            "[upstream]\napi_key = { k = \"gsk_canary_secret\" }",
            "[upstream]\napi_keys = \"gsk_canary_secret\"",
            "[upstream]\napi_keys = [\"gsk_canary_secret\", 12345678901]",
            "[upstream]\napi_keys = { a = \"gsk_canary_secret\" }",
            "[redis]\nurl = [\"redis://:gsk_canary_secret@h\"]",
            "[redis]\nurl = 12345678901",
            "[admin]\nkey_sha256 = [\"gsk_canary_secret\"]",
        ] {
            let all = problems(secret);
            assert!(!all.is_empty(), "{secret}");
            let joined = all.join("\n");
            assert!(
                !joined.contains("canary") && !joined.contains("12345678901"),
                "{secret}: {joined}"
            );
        }
        let mut errors = Vec::new();
        let file = config(
            table("[upstream]\napi_keys = \"gsk_canary_secret\"\n[redis]\nurl = \"redis://:pw_canary@h\"")
                .expect("toml"),
            &mut errors,
        );
        assert!(
            file.secrets.contains(&"gsk_canary_secret".to_owned()),
            "{:?}",
            file.secrets.len()
        );
        assert!(file.secrets.contains(&"pw_canary".to_owned()));
        assert_eq!(file.invalid, ["upstream.api_keys"]);
    }

    /// Each of `SECRET_KEYS` is a real field (a renamed one would be reported as an unknown
    /// key here) and is treated as secret.
    #[test]
    fn secret_keys_are_real_fields() {
        for key in secret::SECRET_KEYS {
            let (table_path, field) = key.rsplit_once('.').expect("table.field");
            let (header, shown) = if table_path == "auth.keys" {
                (
                    "[[auth.keys]]\nname = \"n\"".to_owned(),
                    format!("auth.keys[0].{field}"),
                )
            } else {
                (format!("[{table_path}]"), (*key).to_owned())
            };
            let all = problems(&format!("{header}\n{field} = 1979-05-27"));
            assert_eq!(all.len(), 1, "{key}: {all:?}");
            assert!(all[0].starts_with(&format!("{shown}: expected a ")), "{key}: {all:?}");
            assert!(all[0].ends_with(", found a date-time"), "{key}: {all:?}");
        }
    }

    #[test]
    fn paths_render_like_toml_keys() {
        let path = [
            Seg::Key("rate_limits".into()),
            Seg::Key("models".into()),
            Seg::Key("meta-llama/llama-4".into()),
        ];
        assert_eq!(render(&path), "rate_limits.models.\"meta-llama/llama-4\"");
        let text = "[rate_limits.models.\"meta-llama/llama-4\"]\nrequests_per_minute = \"ten\"";
        assert_eq!(
            problems(text),
            ["rate_limits.models.\"meta-llama/llama-4\".requests_per_minute: expected a whole number, found a string"]
        );
    }
}
