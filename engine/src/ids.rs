//! Validated identifiers and scalar newtypes that cross crate boundaries.
//!
//! Every id is parsed once, at the edge, through its `parse` constructor;
//! past that point a `SpotId` is known to be well formed. Ids read back
//! from disk (bincode `Decode`) and from JSON (`Deserialize`) go through
//! the same checks, so a damaged record is refused, never taken for an
//! id. This module must never accept an id without validating it.

use std::fmt;

use bincode::de::Decoder;
use bincode::error::DecodeError;
use bincode::{Decode, Encode};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must be 1 to {max} characters long")]
    Length { what: &'static str, max: usize },
    #[error("{what} may only contain {allowed}")]
    Charset {
        what: &'static str,
        allowed: &'static str,
    },
}

fn is_operator_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn check(
    value: &str,
    what: &'static str,
    max: usize,
    allowed: &'static str,
    ok: fn(char) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() || value.len() > max {
        return Err(IdError::Length { what, max });
    }
    if !value.chars().all(ok) {
        return Err(IdError::Charset { what, allowed });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:expr, $ok:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Encode)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates an id coming from outside.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                check(value, $what, $max, $allowed, $ok)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Decodes a stored id, refusing one `parse` would refuse.
        impl<Context> Decode<Context> for $name {
            fn decode<D: Decoder<Context = Context>>(d: &mut D) -> Result<Self, DecodeError> {
                Self::parse(&String::decode(d)?).map_err(stored_id_error)
            }
        }
        bincode::impl_borrow_decode!($name);
    };
}

/// Why a stored id was refused (the bytes are not echoed: they are
/// damaged, and may be long).
fn stored_id_error(error: IdError) -> DecodeError {
    DecodeError::OtherString(format!("stored id refused: {error}"))
}

const OPERATOR_CHARS: &str = "letters, digits, '.', '_' and '-'";

string_id!(
    /// A facility, chosen by the operator: `[A-Za-z0-9._-]{1,64}`.
    FacilityId, "a facility id", 64, OPERATOR_CHARS, is_operator_char
);
string_id!(
    /// A zone, unique within its facility: `[A-Za-z0-9._-]{1,64}`.
    ZoneId, "a zone id", 64, OPERATOR_CHARS, is_operator_char
);
string_id!(
    /// A spot, unique within its facility: `[A-Za-z0-9._-]{1,64}`.
    SpotId, "a spot id", 64, OPERATOR_CHARS, is_operator_char
);
string_id!(
    /// An opaque booking id minted by the server.
    BookingId, "a booking id", 64, OPERATOR_CHARS, is_operator_char
);
string_id!(
    /// The owner of a booking: the `sub` of a user token, or `admin`.
    UserId, "a user id", 256, "printable characters", |c: char| !c.is_control()
);

/// A vehicle plate: 1–16 of `[A-Z0-9-]` after upper-casing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Encode)]
pub struct Plate(String);

impl Plate {
    /// Upper-cases, then validates.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let upper = value.to_ascii_uppercase();
        check(&upper, "a plate", 16, "A-Z, 0-9 and '-'", |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-'
        })?;
        Ok(Self(upper))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plate({:?})", self.0)
    }
}

/// Decodes a stored plate, which was stored as `parse` made it: valid
/// and already upper-case.
impl<Context> Decode<Context> for Plate {
    fn decode<D: Decoder<Context = Context>>(d: &mut D) -> Result<Self, DecodeError> {
        let raw = String::decode(d)?;
        let plate = Self::parse(&raw).map_err(stored_id_error)?;
        if plate.0 != raw {
            return Err(DecodeError::Other("stored plate refused: not upper-case"));
        }
        Ok(plate)
    }
}
bincode::impl_borrow_decode!(Plate);

/// A position in a strictly increasing sequence (a zone's journal, a
/// facility's published state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct Seq(pub u64);

impl Seq {
    pub const ZERO: Seq = Seq(0);

    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Wall-clock time as milliseconds since the Unix epoch. The engine's state
/// machines never read a clock: callers pass `Millis` in. The one reading
/// of the system clock is [`Millis::system_now`], for the edges (the
/// node's clock, the stores' upkeep, backups).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct Millis(pub i64);

impl Millis {
    /// The system clock now (0 before the epoch, `i64::MAX` past its
    /// range). Not for the state machines: they take the time as input.
    #[must_use]
    pub fn system_now() -> Millis {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        Millis(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    #[must_use]
    pub fn plus_secs(self, secs: u32) -> Millis {
        Millis(self.0.saturating_add(i64::from(secs) * 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_ids_accept_the_contract_charset() {
        assert!(FacilityId::parse("P1-017.a_b").is_ok());
        assert!(FacilityId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn operator_ids_reject_empty_long_and_foreign_chars() {
        assert!(FacilityId::parse("").is_err());
        assert!(FacilityId::parse(&"a".repeat(65)).is_err());
        assert!(SpotId::parse("a b").is_err());
        assert!(SpotId::parse("é").is_err());
        assert!(ZoneId::parse("a/b").is_err());
    }

    #[test]
    fn stored_ids_decode_only_when_well_formed() {
        use crate::codec::{decode_stable, encode_stored};
        let spot = SpotId::parse("P1-017").expect("valid");
        assert_eq!(decode_stable::<SpotId>(&encode_stored(&spot)), Ok(spot));
        let plate = Plate::parse("ab-1").expect("valid");
        assert_eq!(decode_stable::<Plate>(&encode_stored(&plate)), Ok(plate));
        for raw in ["", "a b", "[1-001", &"a".repeat(65)] {
            assert!(
                decode_stable::<SpotId>(&encode_stored(&raw)).is_err(),
                "{raw:?}"
            );
            assert!(
                decode_stable::<FacilityId>(&encode_stored(&raw)).is_err(),
                "{raw:?}"
            );
        }
        assert!(decode_stable::<UserId>(&encode_stored(&"a\u{7}b")).is_err());
        assert!(
            decode_stable::<Plate>(&encode_stored(&"ab-1")).is_err(),
            "lower case"
        );
        assert!(decode_stable::<Plate>(&encode_stored(&"AB 1")).is_err());
    }

    #[test]
    fn plates_are_upper_cased_then_validated() {
        assert_eq!(Plate::parse("ab-123cd").map(|p| p.0), Ok("AB-123CD".into()));
        assert!(Plate::parse("").is_err());
        assert!(Plate::parse("AB 12").is_err());
        assert!(Plate::parse(&"A".repeat(17)).is_err());
    }
}
