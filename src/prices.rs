//! What Groq charges: the price table shipped with groxy (`prices.toml`, with the date it was taken), overridden per model by the config's `[prices]`, and the cost of a request in nanodollars.
//!
//! Money is counted in nanodollars (1e-9 USD) as integers, so the ledger's sums and the
//! budgets' comparisons are exact; one request's cost is rounded once, to the nanodollar.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::config::PriceConfig;

const SHIPPED: &str = include_str!("prices.toml");

#[derive(Deserialize)]
struct Shipped {
    taken: String,
    source: String,
    models: BTreeMap<String, PriceConfig>,
}

/// One model's price, per token, in nanodollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub cached_input: f64,
    pub output: f64,
}

impl Price {
    fn from_config(config: &PriceConfig) -> Price {
        // Dollars per million tokens are nanodollars per thousandth of a token: ×1000 per token.
        Price {
            input: config.input * 1000.0,
            cached_input: config.cached_input.unwrap_or(config.input / 2.0) * 1000.0,
            output: config.output * 1000.0,
        }
    }

    /// The cost of `prompt` tokens (of which `cached` came from Groq's prompt cache) and
    /// `completion` tokens.
    pub fn cost(&self, prompt: u64, cached: u64, completion: u64) -> u64 {
        let cached = cached.min(prompt);
        let nanos =
            (prompt - cached) as f64 * self.input + cached as f64 * self.cached_input + completion as f64 * self.output;
        nanos.round().max(0.0) as u64
    }
}

/// Prices by model.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: HashMap<String, Price>,
    /// When the shipped prices were taken, and from where.
    pub taken: String,
    pub source: String,
}

impl PriceTable {
    /// The shipped table with `overrides` on top.
    pub fn new(overrides: &BTreeMap<String, PriceConfig>) -> PriceTable {
        let shipped: Option<Shipped> = toml::from_str(SHIPPED).ok();
        let (taken, source, mut models) = match shipped {
            Some(s) => (s.taken, s.source, s.models),
            None => (String::new(), String::new(), BTreeMap::new()),
        };
        models.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        PriceTable {
            models: models.iter().map(|(k, v)| (k.clone(), Price::from_config(v))).collect(),
            taken,
            source,
        }
    }

    /// `None`: not priced (audio models, unknown ones): it costs 0 and no budget reserves for it.
    pub fn get(&self, model: &str) -> Option<Price> {
        self.models.get(model).copied()
    }

    /// Every priced model, in dollars per million tokens, for the admin documents.
    pub fn per_million(&self) -> BTreeMap<&str, [f64; 3]> {
        self.models
            .iter()
            .map(|(k, p)| {
                (
                    k.as_str(),
                    [p.input / 1000.0, p.cached_input / 1000.0, p.output / 1000.0],
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_overrides_win() {
        let table = PriceTable::new(&BTreeMap::new());
        assert!(!table.taken.is_empty());
        let p = table.get("openai/gpt-oss-120b").expect("priced");
        // 1M prompt tokens at $0.15, half of them cached at $0.075, 1M completion at $0.60.
        assert_eq!(p.cost(1_000_000, 500_000, 1_000_000), 112_500_000 + 600_000_000);
        assert_eq!(p.cost(10, 50, 0), 750, "cached tokens never exceed the prompt");
        assert!(table.get("whisper-large-v3-turbo").is_none());
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "openai/gpt-oss-120b".to_owned(),
            PriceConfig {
                input: 1.0,
                output: 2.0,
                cached_input: Some(0.1),
            },
        );
        let p = PriceTable::new(&overrides).get("openai/gpt-oss-120b").expect("priced");
        assert_eq!(p.cost(1000, 100, 1000), 900_000 + 10_000 + 2_000_000);
    }
}
