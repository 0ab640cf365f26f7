//! The operator's flags. Every count and time is bounded here, so a run
//! can never grow without limit, and the only target is `--url`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::LoadtestError;

/// Longest run accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most websocket connections one run may hold.
pub const MAX_CONNECTIONS: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Parking-like traffic at a constant intensity.
    Steady,
    /// Arrivals and bookings ramp up to a peak mid-run, then ebb.
    RushHour,
    /// Every app races for a handful of bookable spots in one facility.
    LastSpot,
    /// Idle watchers stop reading for most of the run, then catch up.
    SlowConsumers,
    /// Every sensor drops its connection at once, twice, and reconnects.
    ReconnectStorm,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::RushHour => "rush-hour",
            Scenario::LastSpot => "last-spot",
            Scenario::SlowConsumers => "slow-consumers",
            Scenario::ReconnectStorm => "reconnect-storm",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// `parkme.v1.json`: text frames.
    Json,
    /// `parkme.v1.bincode`: binary frames, bincode standard config.
    Bincode,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Bincode => "bincode",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BookVia {
    /// `POST /v1/facilities/{fid}/bookings`.
    Http,
    /// `{"op":"book"}` on the app socket.
    Ws,
    /// Half of each.
    Mixed,
}

/// Drives a ParkMe server like a city of sensors and apps; measures it and
/// checks its invariants (exit 2 when one breaks).
#[derive(Debug, Clone, Parser)]
#[command(name = "parkme-loadtest", version, args_override_self = true)]
pub struct Cli {
    /// Base URL of the server (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// The server's admin token (creates the run's facilities).
    #[arg(long, env = "PARKME_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,

    /// The server's JWT secret (mints one user token per app).
    #[arg(long, env = "PARKME_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,

    /// Facilities created for this run.
    #[arg(long, default_value_t = 10)]
    pub facilities: usize,

    /// Spots per facility.
    #[arg(long, default_value_t = 500)]
    pub spots: usize,

    /// Most spots per zone.
    #[arg(long, default_value_t = 100)]
    pub zone_size: usize,

    /// Bookable spots per facility (zone `R`); default: a fifth, or 4 for
    /// last-spot.
    #[arg(long)]
    pub bookable: Option<usize>,

    /// Sensor connections, spread over the facilities (at least one each).
    #[arg(long, default_value_t = 100)]
    pub sensors: usize,

    /// Apps: each a user that subscribes and books.
    #[arg(long, default_value_t = 100)]
    pub apps: usize,

    /// Idle watchers subscribed to spot detail (slow in slow-consumers).
    #[arg(long, default_value_t = 0)]
    pub subscribers: usize,

    /// How long traffic is generated (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// After the run, how long to wait for outstanding acks.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,

    #[arg(long, value_enum, default_value = "steady")]
    pub scenario: Scenario,

    /// Seed of every random choice (random when unset).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Sensor socket encoding.
    #[arg(long, value_enum, default_value = "json")]
    pub encoding: Encoding,

    /// Sensor messages per frame.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,

    /// Unacknowledged sensor messages allowed per connection.
    #[arg(long, default_value_t = 256)]
    pub window: usize,

    /// Sensor messages per second over all sensors (0 = as fast as acks
    /// come back).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// How long a booking holds its spot (`hold_seconds`).
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub hold: Duration,

    /// Mean pause of an app between two bookings.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub think: Duration,

    /// How apps book.
    #[arg(long, value_enum, default_value = "mixed")]
    pub book_via: BookVia,

    /// Source addresses to spread connections over (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub bind: Vec<IpAddr>,

    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,

    /// Write an HTML report (inline SVG) here.
    #[arg(long)]
    pub html: Option<PathBuf>,

    /// Prefix of the run's facility ids (random when unset).
    #[arg(long)]
    pub run_id: Option<String>,

    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl Cli {
    /// Refuses options that would make the run unbounded or meaningless.
    pub fn validate(&self) -> Result<(), LoadtestError> {
        let fail = |m: String| Err(LoadtestError::Config(m));
        if !self.url.starts_with("http://") {
            return fail(format!(
                "--url must be an http:// URL (TLS is not built in), got {:?}",
                self.url
            ));
        }
        if self.facilities == 0 || self.facilities > 1000 {
            return fail("--facilities must be 1 to 1000".into());
        }
        if self.spots == 0 || self.spots > 20_000 {
            return fail("--spots must be 1 to 20000 (per facility)".into());
        }
        if self.zone_size == 0 || self.zone_size > 10_000 {
            return fail("--zone-size must be 1 to 10000".into());
        }
        if self.bookable.is_some_and(|b| b > self.spots) {
            return fail("--bookable cannot exceed --spots".into());
        }
        if self.sensors < self.facilities {
            return fail(format!(
                "--sensors ({}) must be at least --facilities ({}): every facility needs a sensor connection",
                self.sensors, self.facilities
            ));
        }
        let connections = self.sensors + self.apps + self.subscribers;
        if connections > MAX_CONNECTIONS {
            return fail(format!(
                "{connections} connections asked; at most {MAX_CONNECTIONS}"
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return fail("--duration must be more than 0 and at most 1h".into());
        }
        if self.drain > Duration::from_secs(120) {
            return fail("--drain must be at most 2m".into());
        }
        if self.batch == 0 || self.batch > 1000 {
            return fail("--batch must be 1 to 1000".into());
        }
        if self.window < self.batch || self.window > 100_000 {
            return fail("--window must be at least --batch and at most 100000".into());
        }
        if self.hold < Duration::from_secs(1) || self.hold > Duration::from_secs(86_400) {
            return fail("--hold must be 1s to 24h".into());
        }
        if self.think > Duration::from_secs(600) {
            return fail("--think must be at most 10m".into());
        }
        if let Some(id) = &self.run_id {
            let ok = !id.is_empty()
                && id.len() <= 40
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return fail("--run-id must be 1 to 40 of [A-Za-z0-9._-]".into());
            }
        }
        Ok(())
    }
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration (try 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} (ms, s, m, h)")),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0 * 7.0).contains(&seconds) {
        return Err(format!("{raw:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["parkme-loadtest", "--admin-token", "t", "--jwt-secret", "s"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses")
    }

    #[test]
    fn durations_parse_in_the_usual_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn the_documented_command_line_is_accepted() {
        let c = cli(&[
            "--url",
            "http://127.0.0.1:8080",
            "--facilities",
            "10",
            "--spots",
            "500",
            "--sensors",
            "100",
            "--apps",
            "100",
            "--duration",
            "10s",
            "--report",
            "report.json",
            "--bind",
            "127.0.0.2,127.0.0.3",
            "--scenario",
            "last-spot",
            "--encoding",
            "bincode",
        ]);
        assert!(c.validate().is_ok());
        assert_eq!(c.bind.len(), 2);
        assert_eq!(c.scenario, Scenario::LastSpot);
    }

    #[test]
    fn unbounded_or_foreign_runs_are_refused() {
        assert!(cli(&["--duration", "2h"]).validate().is_err());
        assert!(cli(&["--url", "https://example.com"]).validate().is_err());
        assert!(
            cli(&["--sensors", "2", "--facilities", "3"])
                .validate()
                .is_err()
        );
        assert!(cli(&["--apps", "60000"]).validate().is_err());
    }
}
