//! Groq's deprecation table shipped as data (`deprecations.toml`, with the date it was taken) under the config's `[models.retired_ids]`, and where a retired model's replacements lead.
//!
//! Replacements chain (`llama3-8b-8192` → `llama-3.1-8b-instant` → `openai/gpt-oss-20b`), and
//! some retirements hold only for some of Groq's tiers, so "retired" is decided against what the
//! key can use: a model Groq's model list (`GET /models`) has is live, whatever the table says.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

const SHIPPED: &str = include_str!("deprecations.toml");

/// One row of Groq's deprecations page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retirement {
    pub shutdown: String,
    /// The model Groq names instead; `None` when it names none.
    pub replacement: Option<String>,
    /// Set when Groq retired it for these tiers only (`"free, developer"`).
    pub tiers: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shipped {
    taken: String,
    source: String,
    retired: BTreeMap<String, Retirement>,
}

/// The shipped table, parsed once; a unit test keeps it parseable.
static TABLE: LazyLock<Result<Shipped, String>> =
    LazyLock::new(|| toml::from_str(SHIPPED).map_err(|e| format!("deprecations.toml: {e}")));

/// Whether the shipped table parsed, for the config check (a broken build is told at start).
pub fn shipped_error() -> Option<String> {
    TABLE.as_ref().err().cloned()
}

/// When the shipped table was taken, and from where.
pub fn taken() -> (&'static str, &'static str) {
    match &*TABLE {
        Ok(table) => (&table.taken, &table.source),
        Err(_) => ("", ""),
    }
}

/// What a retired model comes to for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The first model along the replacements the key can use: one the catalogue has, or
    /// without a catalogue the chain's last model. `None`: nothing along the chain is live.
    pub live: Option<String>,
    /// The replacement to name to the client: `live`, else the chain's last model (one the
    /// key cannot use); `None` when Groq names none (or the chain runs in a circle).
    pub named: Option<String>,
    /// The chain as followed, starting with the model requested.
    pub chain: Vec<String>,
}

/// The shipped table with the config's rows on top: `retired_ids` maps a retired id to its
/// replacement, `""` for none.
#[derive(Debug, Clone, Copy)]
pub struct Deprecations<'a> {
    overrides: &'a BTreeMap<String, String>,
}

impl<'a> Deprecations<'a> {
    pub fn new(overrides: &'a BTreeMap<String, String>) -> Self {
        Self { overrides }
    }

    /// `Some(replacement)` when `model` is in the table (`Some(None)`: retired, no replacement).
    pub fn lookup(&self, model: &str) -> Option<Option<&'a str>> {
        if let Some(to) = self.overrides.get(model) {
            return Some(Some(to.as_str()).filter(|to| !to.trim().is_empty()));
        }
        let table = TABLE.as_ref().ok()?;
        table.retired.get(model).map(|row| row.replacement.as_deref())
    }

    /// The shipped row of `model`, for its date and tiers (none for a config row).
    pub fn row(&self, model: &str) -> Option<&'static Retirement> {
        if self.overrides.contains_key(model) {
            return None;
        }
        TABLE.as_ref().ok()?.retired.get(model)
    }

    /// Retired for every tier: no key can use it (a config row counts as such).
    pub fn retired_everywhere(&self, model: &str) -> bool {
        self.lookup(model).is_some() && self.row(model).is_none_or(|row| row.tiers.is_none())
    }

    /// Where `model` leads for a key whose usable models `is_live` tells (`None`: no catalogue,
    /// so the table alone decides). `None` when the model is not retired for that key.
    pub fn resolve(&self, model: &str, is_live: Option<&dyn Fn(&str) -> bool>) -> Option<Resolved> {
        let live = |m: &str| is_live.is_some_and(|f| f(m));
        if live(model) {
            return None;
        }
        let mut next = self.lookup(model)?;
        let mut chain = vec![model.to_owned()];
        loop {
            let Some(candidate) = next else {
                // No replacement, or a circle: what was named last (if anything) is not usable.
                return Some(Resolved {
                    live: None,
                    named: None,
                    chain,
                });
            };
            let candidate = candidate.to_owned();
            if chain.contains(&candidate) {
                next = None;
                continue;
            }
            chain.push(candidate.clone());
            if live(&candidate) {
                return Some(Resolved {
                    live: Some(candidate.clone()),
                    named: Some(candidate),
                    chain,
                });
            }
            match self.lookup(&candidate) {
                Some(further) => next = further,
                // The chain's end: live unless a catalogue says the key cannot use it.
                None => {
                    return Some(Resolved {
                        live: is_live.is_none().then(|| candidate.clone()),
                        named: Some(candidate),
                        chain,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn the_shipped_table_parses_with_every_row_of_groqs_page() {
        assert_eq!(shipped_error(), None);
        let (taken, source) = taken();
        assert!(!taken.is_empty() && source.contains("deprecations"));
        let Ok(shipped) = &*TABLE else { panic!("parsed") };
        assert_eq!(shipped.retired.len(), 24);
        let empty = table();
        let d = Deprecations::new(&empty);
        assert_eq!(d.lookup("groq/compound"), Some(None));
        assert_eq!(d.lookup("groq/compound-mini"), Some(None));
        assert_eq!(d.lookup("mistral-saba-24b"), Some(None));
        assert_eq!(
            d.lookup("playai-tts-arabic"),
            Some(Some("canopylabs/orpheus-arabic-saudi"))
        );
        assert_eq!(d.lookup("openai/gpt-oss-20b"), None);
        assert!(d.retired_everywhere("llama3-8b-8192"));
        assert!(
            !d.retired_everywhere("llama-3.1-8b-instant"),
            "free and developer tiers only"
        );
        assert_eq!(d.row("llama3-8b-8192").map(|r| r.shutdown.as_str()), Some("2025-08-30"));
    }

    #[test]
    fn chains_are_followed_to_a_live_model() {
        let empty = table();
        let d = Deprecations::new(&empty);
        let without = d.resolve("llama3-8b-8192", None).expect("retired");
        assert_eq!(without.live.as_deref(), Some("openai/gpt-oss-20b"));
        assert_eq!(
            without.chain,
            ["llama3-8b-8192", "llama-3.1-8b-instant", "openai/gpt-oss-20b"]
        );
        let gemma = d.resolve("gemma-7b-it", None).expect("retired");
        assert_eq!(gemma.live.as_deref(), Some("openai/gpt-oss-20b"));
        assert_eq!(gemma.chain.len(), 4);
        // A catalogue that still lists the 8b model (an enterprise key): it is live.
        let enterprise = |m: &str| m == "llama-3.1-8b-instant" || m == "openai/gpt-oss-20b";
        let with = d.resolve("llama3-8b-8192", Some(&enterprise)).expect("retired");
        assert_eq!(with.live.as_deref(), Some("llama-3.1-8b-instant"));
        assert_eq!(d.resolve("llama-3.1-8b-instant", Some(&enterprise)), None);
        assert_eq!(d.resolve("openai/gpt-oss-20b", None), None);
    }

    #[test]
    fn no_replacement_and_unusable_ends_name_what_they_can() {
        let empty = table();
        let d = Deprecations::new(&empty);
        let saba = d.resolve("mistral-saba-24b", None).expect("retired");
        assert_eq!((saba.live, saba.named), (None, None));
        // The catalogue has no orpheus model: nothing live, but the replacement is named.
        let only_gpt = |m: &str| m.starts_with("openai/");
        let tts = d.resolve("playai-tts", Some(&only_gpt)).expect("retired");
        assert_eq!(tts.live, None);
        assert_eq!(tts.named.as_deref(), Some("canopylabs/orpheus-v1-english"));
    }

    #[test]
    fn config_rows_win_and_circles_end_without_a_replacement() {
        let mut rows = table();
        rows.insert("mistral-saba-24b".into(), "qwen/qwen3.8-27b".into());
        rows.insert("groq/compound".into(), String::new());
        rows.insert("a".into(), "b".into());
        rows.insert("b".into(), "a".into());
        rows.insert("llama-3.1-8b-instant".into(), "openai/gpt-oss-120b".into());
        let d = Deprecations::new(&rows);
        let saba = d.resolve("mistral-saba-24b", None).expect("retired");
        assert_eq!(saba.live.as_deref(), Some("qwen/qwen3.8-27b"));
        assert_eq!(d.resolve("groq/compound", None).and_then(|r| r.named), None);
        let circle = d.resolve("a", None).expect("retired");
        assert_eq!((circle.live, circle.named), (None, None));
        assert_eq!(circle.chain, ["a", "b"]);
        let old = d.resolve("llama3-8b-8192", None).expect("retired");
        assert_eq!(
            old.live.as_deref(),
            Some("openai/gpt-oss-120b"),
            "the config's row is followed"
        );
        assert!(d.retired_everywhere("a"));
    }
}
