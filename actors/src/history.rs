//! Occupancy history (contract §3.1): what one sample of a facility holds,
//! how samples are stored, and how a range of them becomes the points of
//! an answer at a step (each point the counts as of the end of its step).
//!
//! Plain data and pure functions, tested here; the node takes the samples
//! and reads them back. This module must never read the clock or storage.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use parkme_engine::{Counts, Millis, codec};

use crate::publish::FacilityView;

/// Most points one answer may hold.
pub const MAX_POINTS: u64 = 2000;

/// The counts of one zone, or of the whole facility, in a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct SampleCounts {
    pub total: u32,
    pub available: u32,
    pub reserved: u32,
    pub occupied: u32,
    pub out_of_service: u32,
    pub unknown: u32,
}

impl From<&Counts> for SampleCounts {
    fn from(c: &Counts) -> Self {
        SampleCounts {
            total: c.total,
            available: c.available,
            reserved: c.reserved,
            occupied: c.occupied,
            out_of_service: c.out_of_service,
            unknown: c.unknown,
        }
    }
}

/// One sample of a facility: its totals and each zone's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct Sample {
    pub totals: SampleCounts,
    /// `(zone id, counts)` in layout order.
    pub zones: Vec<(String, SampleCounts)>,
}

impl Sample {
    pub fn of(view: &FacilityView) -> Sample {
        Sample {
            totals: SampleCounts::from(&view.totals.overall),
            zones: view
                .zones
                .iter()
                .map(|z| (z.id.to_string(), SampleCounts::from(&z.counts.overall)))
                .collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode_stored(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Sample, codec::CodecError> {
        codec::decode_stable(bytes)
    }
}

/// The step of an answer: `1m`, `5m` (default), `15m`, `1h` or `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Minute,
    FiveMinutes,
    QuarterHour,
    Hour,
    Day,
}

impl Step {
    pub const DEFAULT: Step = Step::FiveMinutes;

    pub fn parse(raw: &str) -> Option<Step> {
        Some(match raw {
            "1m" => Step::Minute,
            "5m" => Step::FiveMinutes,
            "15m" => Step::QuarterHour,
            "1h" => Step::Hour,
            "1d" => Step::Day,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Minute => "1m",
            Step::FiveMinutes => "5m",
            Step::QuarterHour => "15m",
            Step::Hour => "1h",
            Step::Day => "1d",
        }
    }

    pub fn millis(self) -> i64 {
        60_000
            * match self {
                Step::Minute => 1,
                Step::FiveMinutes => 5,
                Step::QuarterHour => 15,
                Step::Hour => 60,
                Step::Day => 1440,
            }
    }
}

/// The ends of the steps that fill `(from, to]` from `from` on (as a
/// Prometheus range query steps): `from + step`, `from + 2 step`, … up to
/// `to`; the default range (the last 24 h) thus ends its last step now.
/// `None` when there would be more than [`MAX_POINTS`].
pub fn point_times(from: Millis, to: Millis, step: Step) -> Option<Vec<Millis>> {
    let size = step.millis();
    if to <= from {
        return Some(Vec::new());
    }
    let steps = (i128::from(to.0) - i128::from(from.0)) / i128::from(size);
    if steps > i128::from(MAX_POINTS) {
        return None;
    }
    // At most 2,000 steps of at most a day: no overflow past `to`.
    let steps = i64::try_from(steps).unwrap_or(0);
    Some((1..=steps).map(|k| Millis(from.0 + k * size)).collect())
}

/// One point of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub at: Millis,
    pub sample: Sample,
}

/// The points at `ends` from `samples` (oldest first): each takes the last
/// sample at or before its end, if that sample is less than `reach` old
/// there; a point with none (the engine was not sampling) is left out.
/// Samples that do not decode are skipped.
pub fn points(samples: &[(Millis, Vec<u8>)], ends: &[Millis], reach: i64) -> Vec<Point> {
    let mut out = Vec::with_capacity(ends.len());
    let mut next = 0;
    let mut last: Option<(Millis, &[u8])> = None;
    for end in ends {
        while let Some((at, bytes)) = samples.get(next) {
            if *at > *end {
                break;
            }
            last = Some((*at, bytes.as_slice()));
            next += 1;
        }
        let Some((at, bytes)) = last else { continue };
        if end.0 - at.0 >= reach {
            continue;
        }
        if let Ok(sample) = Sample::decode(bytes) {
            out.push(Point { at: *end, sample });
        }
    }
    out
}

/// A point's zones by id (the wire's `zones` object).
pub fn zones_by_id(sample: &Sample) -> BTreeMap<&str, SampleCounts> {
    sample
        .zones
        .iter()
        .map(|(id, counts)| (id.as_str(), *counts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(occupied: u32) -> Vec<u8> {
        Sample {
            totals: SampleCounts {
                total: 10,
                occupied,
                available: 10 - occupied,
                ..SampleCounts::default()
            },
            zones: vec![("A".into(), SampleCounts::default())],
        }
        .encode()
    }

    #[test]
    fn steps_spell_what_the_contract_spells() {
        for raw in ["1m", "5m", "15m", "1h", "1d"] {
            assert_eq!(Step::parse(raw).map(Step::as_str), Some(raw));
        }
        assert_eq!(Step::parse("2m"), None);
        assert_eq!(Step::DEFAULT.as_str(), "5m");
    }

    #[test]
    fn points_end_each_step_counted_from_from_up_to_to() {
        let m = 60_000;
        let ends = point_times(Millis(30_000), Millis(4 * m), Step::Minute).expect("few");
        let want: Vec<Millis> = [1, 2, 3].iter().map(|k| Millis(30_000 + k * m)).collect();
        assert_eq!(ends, want, "the partial step at the end is not a point");
        assert_eq!(
            point_times(Millis(m), Millis(m), Step::Minute),
            Some(Vec::new())
        );
        assert_eq!(
            point_times(Millis(5 * m), Millis(m), Step::Minute),
            Some(Vec::new())
        );
        // 2,000 points pass, 2,001 do not.
        assert_eq!(
            point_times(Millis(0), Millis(2000 * m), Step::Minute).map(|p| p.len()),
            Some(2000)
        );
        assert_eq!(point_times(Millis(0), Millis(2001 * m), Step::Minute), None);
        assert_eq!(
            point_times(Millis(i64::MIN), Millis(i64::MAX), Step::Day),
            None
        );
    }

    #[test]
    fn each_point_holds_the_last_sample_of_its_step_and_gaps_stay_gaps() {
        let m = 60_000;
        let samples = vec![
            (Millis(30_000), sample(1)),
            (Millis(m + 10_000), sample(2)),
            (Millis(m + 50_000), sample(3)),
            (Millis(9 * m), sample(9)),
        ];
        let ends: Vec<Millis> = (1..=9).map(|i| Millis(i * m)).collect();
        let got = points(&samples, &ends, 2 * m);
        let seen: Vec<(i64, u32)> = got
            .iter()
            .map(|p| (p.at.0 / m, p.sample.totals.occupied))
            .collect();
        // Minute 3 still sees the sample of 1:50; minutes 4-8 had none
        // within reach; minute 9 has its own.
        assert_eq!(seen, vec![(1, 1), (2, 3), (3, 3), (9, 9)]);
        let damaged = vec![(Millis(0), vec![2, 0xff])];
        assert!(points(&damaged, &[Millis(m)], 2 * m).is_empty());
    }
}
