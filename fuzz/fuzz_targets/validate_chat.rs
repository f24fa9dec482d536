//! Fuzz target: any bytes as a chat request body must give Ok or a rejection, never a panic or a hang.
#![no_main]

use std::{collections::BTreeMap, sync::LazyLock};

use groxy::{
    bench::{Catalog, validate_chat},
    config::ValidationConfig,
};
use libfuzzer_sys::fuzz_target;

static CATALOG: LazyLock<Option<Catalog>> =
    LazyLock::new(|| Catalog::parse(include_bytes!("../../tests/fixtures/groq/models.json")).ok());

fuzz_target!(|data: &[u8]| {
    let config = ValidationConfig::default();
    let aliases: BTreeMap<String, String> = [("gpt-4o-mini".to_owned(), "openai/gpt-oss-20b".to_owned())].into();
    let _ = validate_chat(bytes::Bytes::copy_from_slice(data), &config, &aliases, CATALOG.as_ref());
});
