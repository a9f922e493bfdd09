//! PLACEHOLDER until the notify branch merges.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyOptions {
    pub url: String,
    pub pagerduty_routing_key_file: Option<std::path::PathBuf>,
}
impl NotifyOptions {
    pub fn check(&self) -> Result<(), String> { Ok(()) }
}
