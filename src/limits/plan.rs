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
    pub(super) scopes: Vec<Planned>,
}

impl Plan {
    pub fn new(config: &RateLimitsConfig, caller: &Caller, model: Option<&str>) -> Plan {
        let global = config
            .keys
            .get(&*caller.name)
            .copied()
            .unwrap_or_default()
            .over(config.default);
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
            scopes,
        }
    }
}

/// Tokens to reserve for a request: the prompt estimate plus the completion it may produce.
pub fn reservation(
    config: &RateLimitsConfig,
    prompt_estimate: u64,
    max_completion: Option<u64>,
    model_max: Option<u64>,
) -> u64 {
    let completion = max_completion.unwrap_or(config.completion_reservation);
    let completion = model_max.map_or(completion, |max| completion.min(max));
    prompt_estimate.saturating_add(completion)
}
