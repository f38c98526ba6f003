//! Flags, environment variables and the `--config` TOML file, read into a [`Config`]
//! (feature `cli`, on by default).
//!
//! Precedence is flag > environment variable > `--config` file > default. A component adds
//! its own options next to [`ComponentArgs`] with `#[command(flatten)]` and gets them from
//! the same file through [`ComponentArgs::load`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::Jid;

use crate::config::{Config, LogFormat, Secret};
use crate::error::Error;
use crate::flood::{FloodLimits, RateLimit};
use crate::tls::{TlsConfig, host_of};

/// Command-line flags every component accepts.
///
/// The secret is a [`Secret`] from the first byte it is read, so `Debug` can never show it.
/// It comes from flags (`--secret`, `--secret-file`), the environment
/// (`XMPP_COMPONENT_SECRET`, `XMPP_COMPONENT_SECRET_FILE`) or the TOML file, in that order
/// of precedence *as levels*: a `--secret-file` flag beats an `XMPP_COMPONENT_SECRET`
/// variable. The environment is read into fields of its own so that order can hold.
#[derive(Debug, Clone, Default, Args)]
pub struct ComponentArgs {
    /// TOML file with any of these options (keys are the long flag names).
    #[arg(long, env = "XMPP_COMPONENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The server's component port, e.g. 127.0.0.1:5347.
    #[arg(long, env = "XMPP_COMPONENT_SERVER", value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// The component's domain as configured on the server, e.g. echo.example.org.
    #[arg(long, env = "XMPP_COMPONENT_DOMAIN")]
    pub domain: Option<String>,
    /// Connect with TLS (a server on another host; ejabberd_service with `tls: true`).
    /// The certificate is always verified.
    #[arg(long, env = "XMPP_COMPONENT_TLS")]
    pub tls: bool,
    /// PEM file with the CA certificate(s) to trust for --tls instead of the system's CA
    /// store (for a server certificate from a private CA).
    #[arg(long, env = "XMPP_COMPONENT_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's TLS certificate must carry [default: the host of --server].
    #[arg(long, env = "XMPP_COMPONENT_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// The shared secret (prefer --secret-file or XMPP_COMPONENT_SECRET: flags show up in `ps`).
    #[arg(long, value_name = "SECRET")]
    pub secret: Option<Secret>,
    /// A file whose first line is the shared secret.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// `XMPP_COMPONENT_SECRET`: the secret from the environment (below any flag).
    #[arg(
        long = "secret-from-env",
        env = "XMPP_COMPONENT_SECRET",
        hide = true,
        hide_env_values = true
    )]
    pub secret_env: Option<Secret>,
    /// `XMPP_COMPONENT_SECRET_FILE`: the secret file from the environment (below any flag).
    #[arg(
        long = "secret-file-from-env",
        env = "XMPP_COMPONENT_SECRET_FILE",
        hide = true
    )]
    pub secret_file_env: Option<PathBuf>,
    /// Log filter, e.g. `info` or `xmpp_component=debug,info`.
    #[arg(long, env = "XMPP_COMPONENT_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, env = "XMPP_COMPONENT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Largest inbound stanza in bytes; larger ones are skipped and answered with
    /// policy-violation [default: 524288].
    #[arg(long, value_name = "BYTES")]
    pub max_stanza_size: Option<usize>,
    /// Levels of nesting allowed below a stanza; deeper ones are skipped and answered
    /// with policy-violation [default: 64].
    #[arg(long, value_name = "LEVELS")]
    pub max_depth: Option<usize>,
    /// Outbound queue capacity in stanzas [default: 10000].
    #[arg(long, value_name = "STANZAS")]
    pub queue_size: Option<usize>,
    /// Seconds a stanza may wait in the outbound queue (while the server is unreachable)
    /// before it is dropped as stale; 0 keeps it until it is sent [default: 300].
    #[arg(long, value_name = "SECS")]
    pub queue_ttl: Option<f64>,
    /// Senders whose handlers may run at once [default: 256].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Seconds of silence from the server before we ping it [default: 60].
    #[arg(long, value_name = "SECS")]
    pub ping_after: Option<f64>,
    /// Seconds to wait for the ping's answer before calling the link dead [default: 20].
    #[arg(long, value_name = "SECS")]
    pub ping_timeout: Option<f64>,
    /// JID to ping when idle [default: the parent domain of --domain].
    #[arg(long, value_name = "JID")]
    pub ping_to: Option<String>,
    /// Stanzas per second one sender (full JID) may send before the excess is refused;
    /// 0 turns all flood protection off [default: 100].
    #[arg(long, value_name = "PER_SEC")]
    pub rate_limit: Option<f64>,
    /// Burst a sender may send at once before the rate applies [default: 200].
    #[arg(long, value_name = "STANZAS")]
    pub rate_burst: Option<f64>,
    /// Stanzas per second from all resources of one user (bare JID), burst twice
    /// that; 0 turns this tier off [default: 200].
    #[arg(long, value_name = "PER_SEC")]
    pub rate_limit_user: Option<f64>,
    /// Stanzas per second from all users of one sender domain, burst twice that; 0
    /// turns this tier off [default: 1000].
    #[arg(long, value_name = "PER_SEC")]
    pub rate_limit_domain: Option<f64>,
    /// Comma-separated domains the per-domain limit does not apply to [default: the
    /// parent domain of --domain, i.e. the server's own users].
    #[arg(long, value_name = "DOMAINS", value_delimiter = ',')]
    pub rate_limit_exempt: Option<Vec<String>>,
    /// The same presence this many times from one full JID within
    /// --presence-storm-interval is a storm: its repeats are ignored for one interval;
    /// 0 turns this off [default: 10].
    #[arg(long, value_name = "N")]
    pub presence_storm_count: Option<u32>,
    /// Seconds of the presence-storm window and cool-down [default: 60].
    #[arg(long, value_name = "SECS")]
    pub presence_storm_interval: Option<f64>,
    /// Serve `/metrics` (Prometheus text) and `/health` on this address, apart from any
    /// public listener; keep it on loopback, e.g. 127.0.0.1:9101 [default: off].
    #[arg(long, env = "XMPP_COMPONENT_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Runtime worker threads; 1 runs everything on one thread, the cheapest per stanza
    /// [default: 1, or 2 for a component with an HTTP side].
    #[arg(long, value_name = "N")]
    pub worker_threads: Option<usize>,
}

/// The same options as they may appear in the `--config` TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct FileOptions {
    server: Option<String>,
    domain: Option<String>,
    tls: Option<bool>,
    tls_ca: Option<PathBuf>,
    tls_server_name: Option<String>,
    secret: Option<Secret>,
    secret_file: Option<PathBuf>,
    log: Option<String>,
    log_format: Option<LogFormat>,
    max_stanza_size: Option<usize>,
    queue_size: Option<usize>,
    queue_ttl: Option<f64>,
    concurrency: Option<usize>,
    ping_after: Option<f64>,
    ping_timeout: Option<f64>,
    ping_to: Option<String>,
    rate_limit: Option<f64>,
    rate_burst: Option<f64>,
    rate_limit_user: Option<f64>,
    rate_limit_domain: Option<f64>,
    rate_limit_exempt: Option<Vec<String>>,
    presence_storm_count: Option<u32>,
    presence_storm_interval: Option<f64>,
    max_depth: Option<usize>,
    metrics: Option<SocketAddr>,
    worker_threads: Option<usize>,
    /// Keys that are not the framework's: the component's own options.
    #[serde(flatten)]
    rest: toml::Table,
}

/// A component's own options, declared once: clap flags (`#[derive(clap::Args)]`, every
/// field an `Option`) and the same keys in the `--config` TOML file (`#[derive(Serialize,
/// Deserialize)]` with `#[serde(rename_all = "kebab-case", deny_unknown_fields)]`).
/// [`ComponentArgs::load`] merges them: flag or environment beats the file.
pub trait ComponentOptions: Args + Serialize + DeserializeOwned + Send + 'static {}

impl<T: Args + Serialize + DeserializeOwned + Send + 'static> ComponentOptions for T {}

/// The options of a component that has none of its own: any key in the `--config` file
/// that is not the framework's is an error.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// A component's whole command line: the framework's flags plus its own options `O`
/// ([`NoOptions`] for none). `Cli::<MyOptions>::serve(start)` parses it and runs
/// [`crate::serve`]; a binary that wants its own `--version` and `--help` text declares a
/// struct like this one with `#[command(version, about)]` instead.
#[derive(Debug, clap::Parser)]
pub struct Cli<O: Args> {
    /// The framework's flags.
    #[command(flatten)]
    pub component: ComponentArgs,
    /// The component's own.
    #[command(flatten)]
    pub options: O,
}

impl ComponentArgs {
    /// Merges flags/environment with the `--config` file and validates the result; a key
    /// in the file that is not a framework option is an error.
    pub fn into_config(self) -> Result<Config, Error> {
        self.load(NoOptions {}).map(|(config, _)| config)
    }

    /// [`ComponentArgs::into_config`] for a component with options of its own: `flags`
    /// (as parsed by clap) are merged over the same keys in the `--config` file. A key
    /// that is neither the framework's nor the component's is an error naming it.
    pub fn load<O: ComponentOptions>(self, flags: O) -> Result<(Config, O), Error> {
        let mut file = match &self.config {
            Some(path) => read_file_options(path)?,
            None => FileOptions::default(),
        };
        let options = merge_options(
            std::mem::take(&mut file.rest),
            &flags,
            self.config.as_deref(),
        )?;
        Ok((self.into_config_with(file)?, options))
    }

    fn into_config_with(self, file: FileOptions) -> Result<Config, Error> {
        let server = self
            .server
            .or(file.server)
            .ok_or_else(|| Error::Config("--server HOST:PORT is required".into()))?;
        let domain = self
            .domain
            .or(file.domain)
            .ok_or_else(|| Error::Config("--domain is required".into()))?;
        // Flags, then environment, then file; within a level the value beats the file.
        let levels = [
            (self.secret, self.secret_file),
            (self.secret_env, self.secret_file_env),
            (file.secret, file.secret_file),
        ];
        let Some((value, path)) = levels
            .into_iter()
            .find(|(value, path)| value.is_some() || path.is_some())
        else {
            return Err(Error::Config(
                "a secret is required: --secret-file FILE, XMPP_COMPONENT_SECRET or --secret"
                    .into(),
            ));
        };
        let secret = match (value, path) {
            (Some(secret), _) => secret,
            (None, Some(path)) => read_secret_file(&path)?,
            (None, None) => Secret::default(),
        };
        if secret.expose().is_empty() {
            return Err(Error::Config("the component secret is empty".into()));
        }
        let mut config = Config::new(server, &domain, secret)?;
        let tls_ca = self.tls_ca.or(file.tls_ca);
        let tls_server_name = self.tls_server_name.or(file.tls_server_name);
        if self.tls || file.tls == Some(true) {
            let name = tls_server_name
                .as_deref()
                .unwrap_or(host_of(&config.server));
            config.tls = Some(TlsConfig::new(name, tls_ca.as_deref())?);
        } else if tls_ca.is_some() || tls_server_name.is_some() {
            return Err(Error::Config(
                "--tls-ca and --tls-server-name only apply with --tls".into(),
            ));
        }
        if let Some(log) = self.log.or(file.log) {
            config.log = log;
        }
        if let Some(format) = self.log_format.or(file.log_format) {
            config.log_format = format;
        }
        if let Some(n) = self.max_stanza_size.or(file.max_stanza_size) {
            config.max_stanza_size = positive(n, "max-stanza-size")?;
        }
        if let Some(n) = self.queue_size.or(file.queue_size) {
            config.queue_size = positive(n, "queue-size")?;
        }
        if let Some(secs) = self.queue_ttl.or(file.queue_ttl) {
            config.queue_ttl = (secs != 0.0)
                .then(|| seconds(secs, "queue-ttl"))
                .transpose()?;
        }
        if let Some(n) = self.concurrency.or(file.concurrency) {
            config.concurrency = positive(n, "concurrency")?;
        }
        if let Some(secs) = self.ping_after.or(file.ping_after) {
            config.ping_after = seconds(secs, "ping-after")?;
        }
        if let Some(secs) = self.ping_timeout.or(file.ping_timeout) {
            config.ping_timeout = seconds(secs, "ping-timeout")?;
        }
        if let Some(n) = self.max_depth.or(file.max_depth) {
            config.max_depth = positive(n, "max-depth")?;
        }
        let flood = &mut config.flood;
        if let Some(rate) = self.rate_limit_user.or(file.rate_limit_user) {
            flood.user = doubled(rate_per_second(rate, "rate-limit-user")?);
        }
        if let Some(rate) = self.rate_limit_domain.or(file.rate_limit_domain) {
            flood.domain = doubled(rate_per_second(rate, "rate-limit-domain")?);
        }
        if let Some(domains) = self.rate_limit_exempt.or(file.rate_limit_exempt) {
            flood.exempt_domains = domains.into_iter().filter(|d| !d.is_empty()).collect();
        }
        if let Some(burst) = self.rate_burst.or(file.rate_burst) {
            if !(burst >= 1.0 && burst.is_finite()) {
                return Err(Error::Config("--rate-burst must be at least 1".into()));
            }
            flood.sender.burst = burst;
        }
        if let Some(rate) = self.rate_limit.or(file.rate_limit) {
            flood.sender.per_second = rate_per_second(rate, "rate-limit")?;
            if rate == 0.0 {
                *flood = FloodLimits::off();
            }
        }
        if let Some(n) = self.presence_storm_count.or(file.presence_storm_count) {
            config.presence_storm_count = n;
        }
        if let Some(secs) = self
            .presence_storm_interval
            .or(file.presence_storm_interval)
        {
            config.presence_storm_interval = seconds(secs, "presence-storm-interval")?;
        }
        config.metrics = self.metrics.or(file.metrics);
        if let Some(n) = self.worker_threads.or(file.worker_threads) {
            config.worker_threads = Some(positive(n, "worker-threads")?);
        }
        if let Some(jid) = self.ping_to.or(file.ping_to) {
            config.ping_to = Jid::new(&jid)
                .map_err(|e| Error::Config(format!("--ping-to {jid:?} is not a JID: {e}")))?;
        }
        Ok(config)
    }
}

/// The component's options: the file's keys, overridden by every flag that was given.
fn merge_options<O: ComponentOptions>(
    mut table: toml::Table,
    flags: &O,
    path: Option<&Path>,
) -> Result<O, Error> {
    let given = toml::Table::try_from(flags)
        .map_err(|e| Error::Config(format!("cannot merge the component's options: {e}")))?;
    table.extend(given);
    O::deserialize(toml::Value::Table(table)).map_err(|e| {
        let place = path.map_or_else(String::new, |p| format!("{}: ", p.display()));
        Error::Config(format!("{place}{}", e.message().trim_end()))
    })
}

fn read_file_options(path: &Path) -> Result<FileOptions, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

fn read_secret_file(path: &Path) -> Result<Secret, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read secret file {}: {e}", path.display())))?;
    Ok(Secret::new(text.lines().next().unwrap_or_default().trim()))
}

fn rate_per_second(rate: f64, what: &str) -> Result<f64, Error> {
    if rate >= 0.0 && rate.is_finite() {
        Ok(rate)
    } else {
        Err(Error::Config(format!(
            "--{what} must be 0 or a positive number"
        )))
    }
}

/// A rate whose burst is twice the rate.
fn doubled(per_second: f64) -> RateLimit {
    RateLimit {
        per_second,
        burst: (per_second * 2.0).max(1.0),
    }
}

fn positive(n: usize, what: &str) -> Result<usize, Error> {
    if n == 0 {
        return Err(Error::Config(format!("--{what} must be greater than 0")));
    }
    Ok(n)
}

fn seconds(secs: f64, what: &str) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::Config(format!("--{what} must be a positive number of seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ComponentArgs {
        ComponentArgs {
            server: Some("127.0.0.1:5347".into()),
            domain: Some("echo.localhost".into()),
            secret: Some(Secret::new("s3cret")),
            ..ComponentArgs::default()
        }
    }

    #[test]
    fn defaults_and_parent_ping_target() {
        let config = args().into_config().expect("valid");
        assert_eq!(config.max_stanza_size, 512 * 1024);
        assert_eq!(config.queue_size, 10_000);
        assert_eq!(config.queue_ttl, Some(Duration::from_secs(300)));
        assert_eq!(config.ping_to.to_string(), "localhost");
        assert_eq!(config.max_depth, 64);
        assert_eq!(config.flood.exempt_domains, ["localhost"]);
        assert_eq!(config.flood.user.per_second, 200.0);
        assert_eq!(config.flood.domain.burst, 2000.0);
        assert_eq!(config.presence_storm_count, 10);
        assert_eq!(config.metrics, None);
    }

    #[test]
    fn rate_limit_zero_turns_every_tier_off() {
        let off = ComponentArgs {
            rate_limit: Some(0.0),
            rate_limit_user: Some(5.0),
            ..args()
        };
        assert_eq!(off.into_config().expect("valid").flood, FloodLimits::off());
        let user_off = ComponentArgs {
            rate_limit_user: Some(0.0),
            ..args()
        };
        let flood = user_off.into_config().expect("valid").flood;
        assert_eq!(flood.user.per_second, 0.0);
        assert_eq!(flood.sender.per_second, 100.0);
    }

    #[test]
    fn queue_ttl_zero_means_forever_and_negative_is_refused() {
        let forever = ComponentArgs {
            queue_ttl: Some(0.0),
            ..args()
        };
        assert_eq!(forever.into_config().expect("valid").queue_ttl, None);
        let short = ComponentArgs {
            queue_ttl: Some(2.5),
            ..args()
        };
        let short = short.into_config().expect("valid").queue_ttl;
        assert_eq!(short, Some(Duration::from_millis(2500)));
        let negative = ComponentArgs {
            queue_ttl: Some(-1.0),
            ..args()
        };
        assert!(matches!(negative.into_config(), Err(Error::Config(m)) if m.contains("queue-ttl")));
    }

    #[test]
    fn secret_never_shows_in_debug() {
        let everywhere = ComponentArgs {
            secret_env: Some(Secret::new("s3cret")),
            ..args()
        };
        let file = FileOptions {
            secret: Some(Secret::new("s3cret")),
            ..FileOptions::default()
        };
        let config = args().into_config().expect("valid");
        for shown in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{everywhere:?}"),
            format!("{everywhere:#?}"),
            format!("{file:?}"),
        ] {
            assert!(!shown.contains("s3cret"), "secret leaked: {shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }

    /// Every pair of secret sources from different levels: the higher level wins,
    /// whichever form (value or file) each takes.
    #[test]
    fn secret_precedence_is_flag_then_env_then_file_for_every_pair() {
        let dir = std::env::temp_dir().join(format!("xc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        for name in ["flag-file", "env-file", "toml-file"] {
            write(name, &format!("{name}\n"));
        }
        let toml_value = write("value.toml", "secret = 'toml-value'\n");
        let toml_file = write(
            "file.toml",
            &format!("secret-file = '{}'\n", dir.join("toml-file").display()),
        );
        // (source, level: 0 flag, 1 environment, 2 TOML file)
        let sources = [
            ("flag-value", 0),
            ("flag-file", 0),
            ("env-value", 1),
            ("env-file", 1),
            ("toml-value", 2),
            ("toml-file", 2),
        ];
        let apply = |args: &mut ComponentArgs, source: &str| match source {
            "flag-value" => args.secret = Some(Secret::new(source)),
            "flag-file" => args.secret_file = Some(dir.join(source)),
            "env-value" => args.secret_env = Some(Secret::new(source)),
            "env-file" => args.secret_file_env = Some(dir.join(source)),
            "toml-value" => args.config = Some(toml_value.clone()),
            _ => args.config = Some(toml_file.clone()),
        };
        let mut pairs = 0;
        for (a, a_level) in sources {
            for (b, b_level) in sources {
                if a_level >= b_level {
                    continue;
                }
                let mut args = ComponentArgs {
                    secret: None,
                    ..args()
                };
                apply(&mut args, b);
                apply(&mut args, a);
                let config = args.into_config().expect("valid");
                assert_eq!(config.secret.expose(), a, "{a} must beat {b}");
                pairs += 1;
            }
        }
        assert_eq!(pairs, 12);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn file_fills_gaps_but_flags_win() {
        let dir = std::env::temp_dir().join(format!("xc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let secret_file = dir.join("secret");
        std::fs::write(&secret_file, "from-file\n").expect("write secret");
        let toml = dir.join("c.toml");
        std::fs::write(
            &toml,
            format!(
                "server = '10.0.0.1:1'\ndomain = 'pong.localhost'\nsecret-file = '{}'\n\
                 queue-size = 7\nlog-format = 'json'\nmetrics = '127.0.0.1:9101'\n",
                secret_file.display()
            ),
        )
        .expect("write toml");
        let config = ComponentArgs {
            config: Some(toml),
            server: Some("127.0.0.1:5347".into()),
            ..ComponentArgs::default()
        }
        .into_config()
        .expect("valid");
        assert_eq!(config.server, "127.0.0.1:5347");
        assert_eq!(config.domain.to_string(), "pong.localhost");
        assert_eq!(config.secret.expose(), "from-file");
        assert_eq!(config.queue_size, 7);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.metrics,
            Some(SocketAddr::from(([127, 0, 0, 1], 9101)))
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn tls_settings_from_flags_and_file() {
        assert!(args().into_config().expect("valid").tls.is_none());
        let by_host = ComponentArgs {
            tls: true,
            server: Some("xmpp.example.org:5347".into()),
            ..args()
        };
        let tls = by_host.into_config().expect("valid").tls.expect("tls on");
        assert_eq!(tls.server_name(), "xmpp.example.org");
        let named = ComponentArgs {
            tls: true,
            tls_server_name: Some("component.example.org".into()),
            ..args()
        };
        let tls = named.into_config().expect("valid").tls.expect("tls on");
        assert_eq!(tls.server_name(), "component.example.org");
        let orphan = ComponentArgs {
            tls_ca: Some("ca.pem".into()),
            ..args()
        };
        assert!(matches!(orphan.into_config(), Err(Error::Config(m)) if m.contains("--tls")));

        let dir = std::env::temp_dir().join(format!("xc-tls-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let toml = dir.join("c.toml");
        std::fs::write(&toml, "tls = true\ntls-server-name = 'xmpp.example.org'\n").expect("write");
        let from_file = ComponentArgs {
            config: Some(toml),
            ..args()
        };
        let tls = from_file.into_config().expect("valid").tls.expect("tls on");
        assert_eq!(tls.server_name(), "xmpp.example.org");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn clear_errors_for_missing_or_bad_values() {
        let missing = ComponentArgs {
            secret: None,
            ..args()
        }
        .into_config();
        assert!(matches!(missing, Err(Error::Config(m)) if m.contains("secret")));
        let bad_domain = ComponentArgs {
            domain: Some("user@echo.localhost".into()),
            ..args()
        }
        .into_config();
        assert!(matches!(bad_domain, Err(Error::Config(m)) if m.contains("bare domain")));
    }

    /// A component's own options, as a component declares them.
    #[derive(Debug, Default, Args, Serialize, Deserialize, PartialEq)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Game {
        #[arg(long)]
        tick_hz: Option<u32>,
        #[arg(long)]
        http: Option<SocketAddr>,
        #[arg(long, value_delimiter = ',')]
        allow: Option<Vec<String>>,
    }

    fn toml_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xc-options-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn component_options_come_from_the_same_file_and_flags_win() {
        let path = toml_file(
            "game.toml",
            "server = '127.0.0.1:5347'\nworker-threads = 3\ntick-hz = 30\n\
             http = '127.0.0.1:8081'\nallow = ['a.example']\n",
        );
        let args = || ComponentArgs {
            config: Some(path.clone()),
            ..args()
        };
        let flags = Game {
            tick_hz: Some(60),
            ..Game::default()
        };
        let (config, game) = args().load(flags).expect("valid");
        assert_eq!(config.worker_threads, Some(3));
        assert_eq!(game.tick_hz, Some(60), "the flag beats the file");
        assert_eq!(game.http, Some(SocketAddr::from(([127, 0, 0, 1], 8081))));
        assert_eq!(game.allow.as_deref(), Some(&["a.example".to_owned()][..]));
        // Without options of its own, the component's keys are unknown.
        let error = args().into_config().expect_err("tick-hz is not ours");
        assert!(
            error.to_string().contains("unknown field `allow`"),
            "{error}"
        );
    }

    #[test]
    fn a_typo_in_the_file_is_an_error_naming_the_key() {
        let path = toml_file("typo.toml", "tick-hzz = 30\n");
        let args = ComponentArgs {
            config: Some(path.clone()),
            ..args()
        };
        let error = args.load(Game::default()).expect_err("typo").to_string();
        assert!(error.contains("tick-hzz"), "{error}");
        assert!(error.contains("typo.toml"), "{error}");
        let path = toml_file("wrong-type.toml", "tick-hz = 'fast'\n");
        let args = ComponentArgs {
            config: Some(path),
            ..super::tests::args()
        };
        let error = args.load(Game::default()).expect_err("type").to_string();
        assert!(
            error.contains("tick-hz") || error.contains("u32"),
            "{error}"
        );
    }
}
