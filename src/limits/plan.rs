//! The limits that apply to one request, resolved from the config at admission time, and the tokens it reserves.

use std::sync::Arc;

use crate::{
    auth::Caller,
    config::{LimitSet, RateLimitsConfig},
};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ScopeKey {
    pub(super) partition: [u8; 32],
    pub(super) model: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) key: ScopeKey,
    pub(super) set: LimitSet,
}

/// The limits that apply to one request, resolved from the config at admission time (so a
/// reloaded config applies from the next request on): the caller's scope across models first,
/// then its scope for this model, each only if it has a limit.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(super) caller: Arc<str>,
    /// Who the ledger counts the caller as, for per-day limits seeded from it.
    pub(super) subject: Arc<str>,
    pub(super) scopes: Vec<Planned>,
}

impl Plan {
    pub fn new(config: &RateLimitsConfig, caller: &Caller, model: Option<&str>) -> Plan {
        // A key made at run time carries its own limits; a key of the file has them there.
        let own = match &caller.account {
            Some(account) => account.limits,
            None => config.keys.get(&*caller.name).copied().unwrap_or_default(),
        };
        let global = own.over(config.default);
        // A request that names no model (files, batches, the model list) has only the
        // caller's scope across models.
        let per_model = model.map_or_else(LimitSet::default, |model| {
            config
                .models
                .get(model)
                .copied()
                .unwrap_or_default()
                .over(config.per_model.over(config.preset.per_model()))
        });
        let mut scopes = Vec::with_capacity(2);
        if !global.is_empty() {
            scopes.push(Planned {
                key: ScopeKey {
                    partition: caller.partition,
                    model: None,
                },
                set: global,
            });
        }
        if let (Some(model), false) = (model, per_model.is_empty()) {
            scopes.push(Planned {
                key: ScopeKey {
                    partition: caller.partition,
                    model: Some(model.into()),
                },
                set: per_model,
            });
        }
        Plan {
            caller: caller.name.clone(),
            subject: caller.subject().clone(),
            scopes,
        }
    }

    /// No limit applies: nothing to count.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// This replica's share while the replicas cannot coordinate: every limit divided by the
    /// number of replicas, rounded up, at least 1.
    pub fn local_share(&self, replicas: u64) -> Plan {
        let share = |limit: Option<u64>| limit.map(|l| l.div_ceil(replicas.max(1)).max(1));
        let scopes = self
            .scopes
            .iter()
            .map(|planned| Planned {
                key: planned.key.clone(),
                set: LimitSet {
                    requests_per_minute: share(planned.set.requests_per_minute),
                    requests_per_day: share(planned.set.requests_per_day),
                    tokens_per_minute: share(planned.set.tokens_per_minute),
                    tokens_per_day: share(planned.set.tokens_per_day),
                    max_concurrent: share(planned.set.max_concurrent),
                },
            })
            .collect();
        Plan {
            caller: self.caller.clone(),
            subject: self.subject.clone(),
            scopes,
        }
    }
}

impl Plan {
    /// The smallest token limit (per minute or per day) of any scope: the most one request
    /// can ever be granted.
    fn tightest_tokens(&self) -> Option<u64> {
        self.scopes
            .iter()
            .flat_map(|planned| [planned.set.tokens_per_minute, planned.set.tokens_per_day])
            .flatten()
            .min()
    }
}

/// Tokens to reserve for a request under `plan`: the prompt estimate plus the completion it
/// may produce.
///
/// The completion is what the request caps (`max_completion_tokens`), else groxy's guess
/// (`completion_reservation`), either bounded by the model's own maximum. groxy's guess is
/// also bounded by the caller's tightest token limit: a caller whose limit is below the guess
/// must not have every uncapped request refused as too large (413) when it could fit; such a
/// request reserves the whole limit instead. What the request itself asks for is not bounded,
/// so a prompt plus a stated cap above the whole limit is still a 413.
pub fn reservation(
    config: &RateLimitsConfig,
    plan: &Plan,
    prompt_estimate: u64,
    max_completion: Option<u64>,
    model_max: Option<u64>,
) -> u64 {
    let capped = |completion: u64| model_max.map_or(completion, |max| completion.min(max));
    let completion = match max_completion {
        Some(stated) => capped(stated),
        None => {
            let guess = capped(config.completion_reservation);
            plan.tightest_tokens()
                .map_or(guess, |limit| guess.min(limit.saturating_sub(prompt_estimate)))
        }
    };
    prompt_estimate.saturating_add(completion)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{auth::Caller, config::Preset};

    fn alice() -> Caller {
        Caller {
            name: "alice".into(),
            partition: [7; 32],
            upstream_authorization: None,
            account: None,
        }
    }

    #[test]
    fn the_default_completion_is_bounded_by_the_tightest_token_limit() {
        let mut config = RateLimitsConfig::default();
        let free = |config: &RateLimitsConfig, prompt, stated, model_max| {
            let plan = Plan::new(config, &alice(), Some("m"));
            reservation(config, &plan, prompt, stated, model_max)
        };
        assert_eq!(free(&config, 1, None, None), 1 + 1024, "no limit: the guess");
        assert_eq!(free(&config, 1, None, Some(100)), 101, "the model's maximum");
        config.default.tokens_per_minute = Some(1_000);
        assert_eq!(free(&config, 1, None, None), 1_000, "the whole limit, not 1025");
        assert_eq!(free(&config, 1, None, Some(100)), 101);
        assert_eq!(
            free(&config, 1, Some(2_000), None),
            2_001,
            "a stated cap is not bounded"
        );
        assert_eq!(
            free(&config, 1_500, None, None),
            1_500,
            "a prompt over the limit stays over it"
        );
        config.models.insert(
            "m".to_owned(),
            LimitSet {
                tokens_per_day: Some(600),
                ..LimitSet::default()
            },
        );
        assert_eq!(free(&config, 10, None, None), 600, "the tightest of every scope");
        config.preset = Preset::Free;
        let plan = Plan::new(&config, &alice(), Some("other")).local_share(4);
        assert_eq!(
            reservation(&config, &plan, 10, None, None),
            250,
            "a local share is a limit too"
        );
    }
}
