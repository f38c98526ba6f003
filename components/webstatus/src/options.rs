//! The gateway's own options, declared once: flags, environment and the same keys in the
//! framework's `--config` TOML file (unknown keys are refused there), validated into
//! [`Options`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::limits::{DEFAULT_MAX_USERS, DEFAULT_REGISTRATIONS_PER_DOMAIN, Limits};

/// The gateway's flags, and the same keys in the `--config` file.
#[derive(Debug, Default, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GatewayArgs {
    /// Address the HTTP server listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "XMPP_WEBSTATUS_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Base URL of the status pages as users reach them, e.g. https://status.example.org
    /// [default: http://<--http>].
    #[arg(long, env = "XMPP_WEBSTATUS_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Directory of the registration database [default: ./webstatus-data].
    #[arg(long, env = "XMPP_WEBSTATUS_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Presence probes per second after each (re)connect [default: 50].
    #[arg(long, value_name = "N")]
    pub probe_rate: Option<u32>,
    /// Seconds without an answer to a probe that mean "offline" [default: 10].
    #[arg(long, value_name = "SECS")]
    pub probe_timeout: Option<f64>,
    /// Seconds between periodic re-probes of everyone; 0 disables [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub reprobe_interval: Option<f64>,
    /// Largest number of live (Server-Sent Events) pages at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_live_pages: Option<usize>,
    /// Page cache of the database, in MiB [default: 16].
    #[arg(long, value_name = "MIB")]
    pub db_cache_mb: Option<u64>,
    /// Most registered users; newcomers beyond it are refused, registered users never
    /// (0: no new registrations) [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_users: Option<usize>,
    /// New registrations per sender domain per hour (a bucket of N that refills over the
    /// hour); 0 turns the limit off [default: 100].
    #[arg(long, value_name = "N")]
    pub registrations_per_domain: Option<u32>,
    /// Only users of these domains may register, comma-separated, e.g.
    /// example.org,example.net [default: every domain].
    #[arg(long, value_name = "DOMAINS", value_delimiter = ',')]
    #[serde(default, deserialize_with = "list_or_text")]
    pub allow_domains: Option<Vec<String>>,
}

/// `allow-domains` in the file: a list, or one comma-separated string like the flag.
fn list_or_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum DomainList {
        List(Vec<String>),
        Text(String),
    }
    Ok(
        Option::<DomainList>::deserialize(d)?.map(|list| match list {
            DomainList::List(list) => list,
            DomainList::Text(text) => text.split(',').map(str::to_owned).collect(),
        }),
    )
}

/// Validated gateway options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the HTTP server listens.
    pub http: SocketAddr,
    /// Base URL of the pages, without a trailing slash.
    pub public_url: String,
    /// The database directory.
    pub data: PathBuf,
    /// Probes per second after a (re)connect.
    pub probe_rate: u32,
    /// Silence after a probe that means offline.
    pub probe_timeout: Duration,
    /// Periodic re-probe interval; `None` is off.
    pub reprobe_interval: Option<Duration>,
    /// Most live pages at once.
    pub max_live_pages: usize,
    /// Database page cache in bytes.
    pub db_cache_bytes: u64,
    /// Admission of new registrations.
    pub limits: Limits,
}

impl GatewayArgs {
    /// Applies defaults and checks every value; the error names the option.
    pub fn validate(self) -> Result<Options, String> {
        let http = self
            .http
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let public_url = self.public_url.unwrap_or_else(|| format!("http://{http}"));
        let public_url = public_url.trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://"))
            || public_url.contains(['"', '<', '>', ' ', '\'', '?', '#'])
        {
            return Err(format!(
                "--public-url {public_url:?} must be an http:// or https:// base URL"
            ));
        }
        let probe_rate = self.probe_rate.unwrap_or(50);
        if probe_rate == 0 {
            return Err("--probe-rate must be greater than 0".into());
        }
        let probe_timeout = seconds(self.probe_timeout.unwrap_or(10.0), "probe-timeout")?;
        let reprobe = self.reprobe_interval.unwrap_or(3600.0);
        let reprobe_interval = if reprobe == 0.0 {
            None
        } else {
            Some(seconds(reprobe, "reprobe-interval")?)
        };
        let allow_domains = self.allow_domains.map(domain_set).transpose()?;
        Ok(Options {
            http,
            public_url,
            data: self.data.unwrap_or_else(|| PathBuf::from("webstatus-data")),
            probe_rate,
            probe_timeout,
            reprobe_interval,
            max_live_pages: self.max_live_pages.unwrap_or(10_000),
            db_cache_bytes: self.db_cache_mb.unwrap_or(16) << 20,
            limits: Limits {
                max_users: self.max_users.unwrap_or(DEFAULT_MAX_USERS),
                registrations_per_domain: self
                    .registrations_per_domain
                    .unwrap_or(DEFAULT_REGISTRATIONS_PER_DOMAIN),
                allow_domains,
            },
        })
    }
}

/// `--allow-domains`: lower-case domain names, none empty, at least one.
fn domain_set(list: Vec<String>) -> Result<HashSet<String>, String> {
    let mut set = HashSet::new();
    for entry in list {
        let domain = entry.trim().trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || domain.contains(['@', '/', ' ', '*']) {
            return Err(format!(
                "--allow-domains: {entry:?} is not a domain name (expected e.g. example.org,example.net)"
            ));
        }
        set.insert(domain);
    }
    if set.is_empty() {
        return Err("--allow-domains needs at least one domain".into());
    }
    Ok(set)
}

fn seconds(secs: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--{what} must be a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let options = GatewayArgs::default().validate().expect("defaults");
        assert_eq!(options.public_url, "http://127.0.0.1:8080");
        assert_eq!(options.reprobe_interval, Some(Duration::from_secs(3600)));
        let zero = GatewayArgs {
            probe_rate: Some(0),
            ..GatewayArgs::default()
        };
        assert!(
            zero.validate()
                .expect_err("refused")
                .contains("--probe-rate")
        );
        let bad_url = GatewayArgs {
            public_url: Some("ftp://x".into()),
            ..GatewayArgs::default()
        };
        assert!(
            bad_url
                .validate()
                .expect_err("refused")
                .contains("--public-url")
        );
    }

    #[test]
    fn allow_domains_is_a_list_or_a_comma_separated_string_in_the_file() {
        for text in [
            "allow-domains = ['Example.org', 'b.example.']",
            "allow-domains = 'example.org,b.example'",
        ] {
            let args: GatewayArgs = toml::from_str(text).expect("parses");
            let options = args.validate().expect("valid");
            let mut domains: Vec<_> = options
                .limits
                .allow_domains
                .expect("set")
                .into_iter()
                .collect();
            domains.sort();
            assert_eq!(domains, ["b.example", "example.org"]);
        }
        let bad = GatewayArgs {
            allow_domains: Some(vec!["*.example".into()]),
            ..GatewayArgs::default()
        };
        assert!(
            bad.validate()
                .expect_err("refused")
                .contains("not a domain name")
        );
    }
}
