//! Command line and environment: parsed by clap, then checked into a [`Config`].
//!
//! Flag names follow the Prometheus exporter convention (`--web.listen-address`)
//! and are a contract: dashboards, docs and tests depend on them. Every flag also
//! reads an environment variable. The API key itself has no flag, so it never
//! shows in `ps`: it comes from `RESPAN_API_KEY` or from `--respan.api-key-file`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use reqwest::Url;

use crate::api::RetryPolicy;
use crate::server::ServerLimits;
use crate::web_config::WebConfig;

/// Environment variable that carries the API key.
pub const API_KEY_ENV: &str = "RESPAN_API_KEY";

/// Poll interval in `--demo` mode when none is given.
pub const DEMO_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Poll interval outside demo mode when none is given.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// The raw command line. [`Config::from_cli`] turns it into a checked [`Config`].
#[derive(Debug, Parser)]
#[command(
    name = "respan-exporter",
    version,
    about = "Prometheus exporter for Respan: per-customer LLM cost, tokens, requests and latency",
    after_help = "The API key is read from the RESPAN_API_KEY environment variable or from --respan.api-key-file."
)]
pub struct Cli {
    /// Read the API key from this file instead of RESPAN_API_KEY (re-read at every poll).
    #[arg(
        long = "respan.api-key-file",
        env = "RESPAN_API_KEY_FILE",
        value_name = "PATH"
    )]
    pub api_key_file: Option<PathBuf>,

    /// Root URL of the Respan API.
    #[arg(
        long = "respan.base-url",
        env = "RESPAN_BASE_URL",
        default_value = "https://api.respan.ai",
        value_name = "URL"
    )]
    pub base_url: String,

    /// Comma-separated Respan environments to poll.
    #[arg(
        long = "respan.environments",
        env = "RESPAN_ENVIRONMENTS",
        default_value = "prod,test",
        value_name = "LIST"
    )]
    pub environments: String,

    /// Time between the starts of two polls [default: 60s, 10s with --demo].
    #[arg(long = "respan.poll-interval", env = "RESPAN_POLL_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,

    /// Time between full passes; polls in between read only customers active since the previous poll.
    #[arg(long = "respan.full-sync-interval", env = "RESPAN_FULL_SYNC_INTERVAL", default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    pub full_sync_interval: Duration,

    /// How far before the previous poll's start an incremental pass still reads:
    /// room for clock skew and for a last activity that Respan records late or rounds down.
    #[arg(long = "respan.incremental-margin", env = "RESPAN_INCREMENTAL_MARGIN", default_value = "2m", value_name = "DURATION", value_parser = parse_duration)]
    pub incremental_margin: Duration,

    /// Timeout of one HTTP request to the API.
    #[arg(long = "respan.timeout", env = "RESPAN_TIMEOUT", default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Client-side cap on API requests per minute, over all environments (the API allows 60).
    #[arg(
        long = "respan.requests-per-minute",
        env = "RESPAN_REQUESTS_PER_MINUTE",
        default_value_t = 50,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=6000)
    )]
    pub requests_per_minute: u32,

    /// Retries of one page after a server error, timeout or connection failure.
    #[arg(
        long = "respan.max-retries",
        env = "RESPAN_MAX_RETRIES",
        default_value_t = 3,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(0..=20)
    )]
    pub max_retries: u32,

    /// Customers per environment that get their own series.
    #[arg(
        long = "metrics.top-n",
        env = "RESPAN_TOP_N",
        default_value_t = 10,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(0..=1000)
    )]
    pub top_n: u32,

    /// Address to listen on for the web interface and telemetry.
    #[arg(
        long = "web.listen-address",
        env = "RESPAN_WEB_LISTEN_ADDRESS",
        default_value = ":10077",
        value_name = "ADDRESS"
    )]
    pub listen_address: String,

    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        env = "RESPAN_WEB_TELEMETRY_PATH",
        default_value = "/metrics",
        value_name = "PATH"
    )]
    pub telemetry_path: String,

    /// Web configuration file (exporter-toolkit format): TLS and basic authentication.
    #[arg(
        long = "web.config.file",
        env = "RESPAN_WEB_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub web_config_file: Option<PathBuf>,

    /// Only log messages with the given severity or above: trace, debug, info, warn, error.
    #[arg(long = "log.level", env = "RESPAN_LOG_LEVEL", default_value = "info", value_name = "LEVEL", value_parser = parse_level)]
    pub log_level: tracing::Level,

    /// Output format of log messages.
    #[arg(
        long = "log.format",
        env = "RESPAN_LOG_FORMAT",
        default_value = "text",
        value_enum
    )]
    pub log_format: LogFormat,

    /// Run against a simulated Respan API inside the process (no key needed).
    #[arg(long = "demo", env = "RESPAN_DEMO")]
    pub demo: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn parse_level(s: &str) -> Result<tracing::Level, String> {
    s.parse::<tracing::Level>()
        .map_err(|_| "expected one of trace, debug, info, warn, error".to_string())
}

/// An API key. Its `Debug` and `Display` print `[redacted]`, so it cannot reach
/// a log line, an error message or a panic by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wraps a key; surrounding white space (a file's trailing newline) is dropped.
    pub fn new(key: &str) -> Option<Self> {
        let key = key.trim();
        (!key.is_empty()).then(|| Self(Arc::from(key)))
    }

    /// The key itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the API key comes from. A file is re-read at every poll, so a rotated
/// Kubernetes secret takes effect without a restart.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A key given once (environment variable, demo, tests).
    Fixed(ApiKey),
    /// A file holding the key.
    File(PathBuf),
}

impl KeySource {
    /// The current key.
    pub fn load(&self) -> Result<ApiKey, KeyError> {
        match self {
            KeySource::Fixed(key) => Ok(key.clone()),
            KeySource::File(path) => read_key_file(path),
        }
    }
}

/// Why the key file gave no key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read API key file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds only white space.
    #[error("API key file {0} is empty")]
    Empty(PathBuf),
}

fn read_key_file(path: &Path) -> Result<ApiKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    ApiKey::new(&text).ok_or_else(|| KeyError::Empty(path.to_owned()))
}

/// The address to listen on: `host:port`, `[v6]:port` or `:port` (all interfaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// Host name or IP; `None` means every IPv4 interface.
    pub host: Option<String>,
    /// TCP port; 0 asks the OS for a free one.
    pub port: u16,
}

impl ListenAddress {
    /// Parses the Prometheus-style forms `:10077`, `127.0.0.1:10077`, `[::1]:10077`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} has no port (expected host:port or :port)"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?} has an invalid port {port:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.contains(char::is_whitespace) {
            return Err(format!("{s:?} has an invalid host"));
        }
        let host = (!host.is_empty()).then(|| host.to_string());
        Ok(Self { host, port })
    }

    /// The `host:port` string to bind.
    pub fn bind_target(&self) -> String {
        match &self.host {
            Some(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            Some(h) => format!("{h}:{}", self.port),
            None => format!("0.0.0.0:{}", self.port),
        }
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(_) => f.write_str(&self.bind_target()),
            None => write!(f, ":{}", self.port),
        }
    }
}

/// A checked configuration: everything the exporter needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the key comes from; `None` only in demo mode, which supplies its own.
    pub key: Option<KeySource>,
    /// API root; in demo mode replaced by the simulated API's address at start.
    pub base_url: Url,
    /// Environments to poll, in order, without duplicates.
    pub environments: Vec<String>,
    /// Time between the starts of two polls.
    pub poll_interval: Duration,
    /// Time between full passes; zero makes every pass full.
    pub full_sync_interval: Duration,
    /// How far before the previous poll's start an incremental pass reads.
    pub incremental_margin: Duration,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Client-side cap on API requests per minute.
    pub requests_per_minute: u32,
    /// How failed requests are retried.
    pub retry: RetryPolicy,
    /// Customers per environment given their own series.
    pub top_n: usize,
    /// Where the web server listens.
    pub listen_address: ListenAddress,
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// TLS and basic authentication of the web server.
    pub web: WebConfig,
    /// Timeouts and connection limit of the web server.
    pub server_limits: ServerLimits,
    /// Log level.
    pub log_level: tracing::Level,
    /// Log format.
    pub log_format: LogFormat,
    /// Run against the simulated API.
    pub demo: bool,
}

/// A configuration error: names the flag and says what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct ConfigError {
    /// The flag (or environment variable) at fault.
    pub flag: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn bad(flag: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        problem: problem.into(),
    }
}

impl Config {
    /// Checks the command line. `env_key` is the value of `RESPAN_API_KEY`, if set.
    pub fn from_cli(cli: Cli, env_key: Option<String>) -> Result<Self, ConfigError> {
        let key = match (&cli.api_key_file, env_key) {
            (Some(path), _) => {
                // Read it once now so that a wrong path fails at start, not at the first poll.
                read_key_file(path).map_err(|e| bad("--respan.api-key-file", e.to_string()))?;
                Some(KeySource::File(path.clone()))
            }
            (None, Some(k)) => match ApiKey::new(&k) {
                Some(key) => Some(KeySource::Fixed(key)),
                None if cli.demo => None,
                None => return Err(bad(API_KEY_ENV, "is set but empty")),
            },
            (None, None) if cli.demo => None,
            (None, None) => {
                return Err(bad(
                    API_KEY_ENV,
                    "no API key: set RESPAN_API_KEY or --respan.api-key-file (or run with --demo)",
                ));
            }
        };

        let base_url = parse_base_url(&cli.base_url).map_err(|p| bad("--respan.base-url", p))?;

        let mut environments: Vec<String> = Vec::new();
        for env in cli.environments.split(',').map(str::trim) {
            if env.is_empty() {
                continue;
            }
            if !env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(
                    "--respan.environments",
                    format!("{env:?} is not a valid environment name"),
                ));
            }
            if !environments.iter().any(|e| e == env) {
                environments.push(env.to_string());
            }
        }
        if environments.is_empty() {
            return Err(bad("--respan.environments", "names no environment"));
        }

        let listen_address = ListenAddress::parse(&cli.listen_address)
            .map_err(|p| bad("--web.listen-address", p))?;

        let telemetry_path = cli.telemetry_path.trim().to_string();
        if !telemetry_path.starts_with('/') || telemetry_path.len() < 2 {
            return Err(bad(
                "--web.telemetry-path",
                format!("{telemetry_path:?} must start with '/' and name a path"),
            ));
        }
        if ["/healthz", "/readyz"].contains(&telemetry_path.as_str()) {
            return Err(bad(
                "--web.telemetry-path",
                format!("{telemetry_path:?} is taken by the health endpoints"),
            ));
        }

        let poll_interval = cli.poll_interval.unwrap_or(if cli.demo {
            DEMO_POLL_INTERVAL
        } else {
            DEFAULT_POLL_INTERVAL
        });

        let web = match &cli.web_config_file {
            Some(path) => {
                WebConfig::load(path).map_err(|e| bad("--web.config.file", e.to_string()))?
            }
            None => WebConfig::default(),
        };

        Ok(Config {
            key,
            base_url,
            environments,
            poll_interval,
            full_sync_interval: cli.full_sync_interval,
            incremental_margin: cli.incremental_margin,
            timeout: cli.timeout,
            requests_per_minute: cli.requests_per_minute,
            retry: RetryPolicy {
                max_retries: cli.max_retries,
                ..RetryPolicy::default()
            },
            top_n: cli.top_n as usize,
            listen_address,
            telemetry_path,
            web,
            server_limits: ServerLimits::default(),
            log_level: cli.log_level,
            log_format: cli.log_format,
            demo: cli.demo,
        })
    }

    /// A configuration for tests and embedding: polls `base_url` with `key`,
    /// listens on 127.0.0.1 on a free port, with no practical rate limit,
    /// millisecond backoffs, and a full pass at every poll.
    pub fn for_base_url(base_url: Url, key: ApiKey) -> Self {
        Config {
            key: Some(KeySource::Fixed(key)),
            base_url,
            environments: vec!["prod".into(), "test".into()],
            poll_interval: DEFAULT_POLL_INTERVAL,
            full_sync_interval: Duration::ZERO,
            incremental_margin: crate::poller::INCREMENTAL_MARGIN,
            timeout: Duration::from_secs(30),
            requests_per_minute: 6000,
            retry: RetryPolicy {
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(100),
                ..RetryPolicy::default()
            },
            top_n: 10,
            listen_address: ListenAddress {
                host: Some("127.0.0.1".into()),
                port: 0,
            },
            telemetry_path: "/metrics".into(),
            web: WebConfig::default(),
            server_limits: ServerLimits::default(),
            log_level: tracing::Level::INFO,
            log_format: LogFormat::Text,
            demo: false,
        }
    }
}

/// Checks a base URL: http or https, a host, no credentials, query or fragment.
pub fn parse_base_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{s:?} must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; put the key in RESPAN_API_KEY".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{s:?} must not have a query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["respan-exporter"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("arguments parse")
    }

    #[test]
    fn listen_address_forms() {
        let a = ListenAddress::parse(":10077").expect("parses");
        assert_eq!((a.host, a.port), (None, 10077));
        let a = ListenAddress::parse("127.0.0.1:9").expect("parses");
        assert_eq!(a.bind_target(), "127.0.0.1:9");
        let a = ListenAddress::parse("[::1]:80").expect("parses");
        assert_eq!(a.bind_target(), "[::1]:80");
        assert!(ListenAddress::parse("10077").is_err());
        assert!(ListenAddress::parse(":99999").is_err());
        assert!(ListenAddress::parse("host:").is_err());
    }

    #[test]
    fn missing_key_outside_demo_names_the_variable() {
        let err = Config::from_cli(cli(&[]), None).expect_err("must fail");
        assert_eq!(err.flag, API_KEY_ENV);
        assert!(Config::from_cli(cli(&["--demo"]), None).is_ok());
    }

    #[test]
    fn bad_values_name_their_flag() {
        let err = Config::from_cli(cli(&["--respan.base-url", "ftp://x"]), Some("k".into()))
            .expect_err("must fail");
        assert_eq!(err.flag, "--respan.base-url");
        let err = Config::from_cli(
            cli(&["--respan.base-url", "https://u:p@x"]),
            Some("k".into()),
        )
        .expect_err("must fail");
        assert!(!err.to_string().contains(":p@"));
        let err = Config::from_cli(cli(&["--web.listen-address", "nope"]), Some("k".into()))
            .expect_err("must fail");
        assert_eq!(err.flag, "--web.listen-address");
        let err = Config::from_cli(
            cli(&["--respan.api-key-file", "/nonexistent/key"]),
            Some("k".into()),
        )
        .expect_err("must fail");
        assert_eq!(err.flag, "--respan.api-key-file");
        let err = Config::from_cli(cli(&["--respan.environments", " , "]), Some("k".into()))
            .expect_err("must fail");
        assert_eq!(err.flag, "--respan.environments");
        let err = Config::from_cli(cli(&["--web.telemetry-path", "/readyz"]), Some("k".into()))
            .expect_err("must fail");
        assert_eq!(err.flag, "--web.telemetry-path");
    }

    #[test]
    fn bad_duration_is_rejected_by_the_parser() {
        let all = ["respan-exporter", "--respan.poll-interval", "soon"];
        let err = Cli::try_parse_from(all).expect_err("must fail");
        assert!(err.to_string().contains("--respan.poll-interval"));
        let all = ["respan-exporter", "--respan.timeout", "0s"];
        assert!(Cli::try_parse_from(all).is_err());
    }

    #[test]
    fn defaults_and_demo_interval() {
        let c = Config::from_cli(cli(&[]), Some(" key\n".into())).expect("valid");
        assert_eq!(c.poll_interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(c.environments, ["prod", "test"]);
        assert_eq!(c.top_n, 10);
        assert_eq!(c.listen_address.port, 10077);
        let c = Config::from_cli(cli(&["--demo"]), None).expect("valid");
        assert_eq!(c.poll_interval, DEMO_POLL_INTERVAL);
        let c = Config::from_cli(
            cli(&["--demo", "--respan.environments", "prod,prod,test"]),
            None,
        )
        .expect("valid");
        assert_eq!(c.environments, ["prod", "test"]);
    }

    #[test]
    fn api_key_never_prints() {
        let key = ApiKey::new("sk-canary-123").expect("non-empty");
        assert_eq!(format!("{key:?}"), "[redacted]");
        assert_eq!(format!("{key}"), "[redacted]");
        let src = KeySource::Fixed(key);
        assert!(!format!("{src:?}").contains("canary"));
    }

    #[test]
    fn key_file_is_trimmed_and_reread() {
        let dir = std::env::temp_dir().join(format!("respan-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("key");
        std::fs::write(&path, "first\n").expect("write");
        let src = KeySource::File(path.clone());
        assert_eq!(src.load().expect("key").expose(), "first");
        std::fs::write(&path, "second").expect("write");
        assert_eq!(src.load().expect("key").expose(), "second");
        std::fs::write(&path, "  \n").expect("write");
        assert!(matches!(src.load(), Err(KeyError::Empty(_))));
        std::fs::remove_dir_all(&dir).ok();
    }
}
