//! The Garage cluster scripts/test.sh starts for the S3 tests, as the environment names it.

pub const REQUIRED_VARS: [&str; 6] = [
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "LIFELINE_TEST_BUCKET",
    "LIFELINE_TEST_BUCKET2",
];

/// Where the S3 service is and how to sign requests to it.
#[derive(Clone, Debug)]
pub struct S3Env {
    pub endpoint: String,
    pub region: String,
    pub key_id: String,
    pub secret: String,
    pub bucket: String,
    pub bucket2: String,
}

impl S3Env {
    /// From the test process's environment; fails (never skips) when unset.
    #[track_caller]
    pub fn from_env() -> S3Env {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let missing: Vec<&str> = REQUIRED_VARS
            .iter()
            .copied()
            .filter(|k| get(k).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "the S3 tests need a running Garage cluster, but {} {} not set.\n\
             Run the whole suite with scripts/test.sh (it starts a cluster and exports them), \
             or start one yourself:\n    scripts/garage.sh start /tmp/lifeline-garage && \
             source /tmp/lifeline-garage/env",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        );
        S3Env::from_lookup(|k| get(k))
    }

    /// The cluster `get` describes; every name of [`REQUIRED_VARS`] must be there.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> S3Env {
        S3Env {
            endpoint: get("AWS_ENDPOINT_URL").unwrap(),
            region: get("AWS_REGION").unwrap(),
            key_id: get("AWS_ACCESS_KEY_ID").unwrap(),
            secret: get("AWS_SECRET_ACCESS_KEY").unwrap(),
            bucket: get("LIFELINE_TEST_BUCKET").unwrap(),
            bucket2: get("LIFELINE_TEST_BUCKET2").unwrap(),
        }
    }
}
