//! `[models]`: the catalogue's refresh, aliases, fallbacks, and what a request for a model Groq retired gets; and the checks that keep aliases, fallbacks and Groq's deprecation table in agreement.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::units::HumanDuration;
use crate::deprecations::Deprecations;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ModelsConfig {
    /// How often the model catalogue (`GET /models`) is refreshed in the background.
    pub refresh_interval: HumanDuration,
    /// Model names clients may use in place of Groq's, so OpenAI code runs unchanged.
    /// Setting this table replaces the defaults.
    pub aliases: BTreeMap<String, String>,
    /// Per model, the models to try in order when it is over capacity (498, 503) or its
    /// retries are spent. Not followed transitively: each chain is listed whole.
    pub fallbacks: BTreeMap<String, Vec<String>>,
    /// A `service_tier: "flex"` request Groq turns away with 498 is sent again at `on_demand`.
    pub flex_fallback_to_on_demand: bool,
    /// What a request for a model Groq retired gets.
    pub retired: RetiredPolicy,
    /// Rows added to (or replacing) Groq's deprecation table shipped with groxy: a retired id
    /// and its replacement, `""` for none.
    pub retired_ids: BTreeMap<String, String>,
}

/// Old code keeps working (`remap`), or learns it must change (`reject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RetiredPolicy {
    /// Send the live replacement instead, say so in `x-groxy-mapped`, warn once an hour.
    #[default]
    Remap,
    /// Answer as Groq does: 400 `model_decommissioned`, with the replacement named.
    Reject,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        let aliases = [
            ("gpt-4o-mini", "openai/gpt-oss-20b"),
            ("gpt-4.1-mini", "openai/gpt-oss-20b"),
            ("gpt-5-mini", "openai/gpt-oss-20b"),
            ("gpt-4o", "openai/gpt-oss-120b"),
            ("gpt-4.1", "openai/gpt-oss-120b"),
            ("gpt-5", "openai/gpt-oss-120b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Self {
            refresh_interval: HumanDuration::secs(600),
            aliases,
            fallbacks: Default::default(),
            flex_fallback_to_on_demand: false,
            retired: RetiredPolicy::Remap,
            retired_ids: Default::default(),
        }
    }
}

impl ModelsConfig {
    /// The deprecation table this config sees.
    pub fn deprecations(&self) -> Deprecations<'_> {
        Deprecations::new(&self.retired_ids)
    }

    /// An alias or a fallback naming a model no key can use any more is an error that names
    /// its replacement (it would never work); one retired for some tiers only is accepted (the
    /// catalogue tells at run time whether this key still has it). A config row whose
    /// replacements run in a circle is an error too.
    pub(super) fn validate_retired(&self, errors: &mut Vec<String>) {
        if let Some(error) = crate::deprecations::shipped_error() {
            errors.push(error);
        }
        let table = self.deprecations();
        for (id, to) in &self.retired_ids {
            if id.trim().is_empty() {
                errors.push(format!("models.retired_ids: {id:?} = {to:?} must name a model"));
            } else if to.trim().is_empty() {
                continue;
            } else if table.resolve(id, None).is_some_and(|r| r.named.is_none()) {
                errors.push(format!(
                    "models.retired_ids: {id:?} = {to:?}: its replacements run in a circle"
                ));
            }
        }
        let retired = |model: &str| {
            if !table.retired_everywhere(model) {
                return None;
            }
            let resolved = table.resolve(model, None)?;
            let since = table
                .row(model)
                .map(|row| format!(" on {}", row.shutdown))
                .unwrap_or_default();
            Some(match resolved.named {
                Some(_) => format!(
                    "Groq retired {model:?}{since}; name its replacement instead ({})",
                    resolved.chain[1..].join(" → ")
                ),
                None => format!("Groq retired {model:?}{since} and names no replacement"),
            })
        };
        for (alias, target) in &self.aliases {
            if let Some(why) = retired(target) {
                errors.push(format!("models.aliases: {alias:?} = {target:?}: {why}"));
            }
        }
        for (model, chain) in &self.fallbacks {
            for named in std::iter::once(model).chain(chain) {
                if let Some(why) = retired(named) {
                    errors.push(format!("models.fallbacks: {model:?} = {chain:?}: {why}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(config: &ModelsConfig) -> Vec<String> {
        let mut errors = Vec::new();
        config.validate_retired(&mut errors);
        errors
    }

    #[test]
    fn aliases_and_fallbacks_naming_a_model_retired_everywhere_are_errors_with_its_replacement() {
        let mut config = ModelsConfig::default();
        assert_eq!(problems(&config), Vec::<String>::new());
        config.aliases.insert("fast".into(), "llama3-8b-8192".into());
        config.aliases.insert("tier".into(), "llama-3.1-8b-instant".into());
        config
            .fallbacks
            .insert("openai/gpt-oss-120b".into(), vec!["mistral-saba-24b".into()]);
        let errors = problems(&config);
        assert_eq!(
            errors,
            [
                "models.aliases: \"fast\" = \"llama3-8b-8192\": Groq retired \"llama3-8b-8192\" on 2025-08-30; name its replacement instead (llama-3.1-8b-instant → openai/gpt-oss-20b)",
                "models.fallbacks: \"openai/gpt-oss-120b\" = [\"mistral-saba-24b\"]: Groq retired \"mistral-saba-24b\" on 2025-07-30 and names no replacement",
            ],
            "a model retired on some tiers only is accepted"
        );
    }

    #[test]
    fn config_rows_are_checked() {
        let mut config = ModelsConfig::default();
        config.retired_ids.insert("a".into(), "b".into());
        config.retired_ids.insert("b".into(), "a".into());
        config.retired_ids.insert("old".into(), String::new());
        config.retired_ids.insert("mine".into(), "openai/gpt-oss-20b".into());
        config.aliases.insert("x".into(), "mine".into());
        let errors = problems(&config);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("\"a\" = \"b\": its replacements run in a circle"));
        assert!(
            errors[2].contains("name its replacement instead (openai/gpt-oss-20b)"),
            "{errors:?}"
        );
    }
}
