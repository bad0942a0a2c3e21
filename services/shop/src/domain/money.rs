//! Money: integer cents inside, a decimal number with at most two places on the wire.

use super::{ShopError, MAX_CENTS};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of money in cents; a decimal number with at most two places on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Money(pub i64);

impl Money {
    /// Parses a wire price.
    ///
    /// # Errors
    /// Negative, not finite, too large, or more than two decimal places; the message names `field`.
    pub fn parse(field: &str, value: f64) -> Result<Self, ShopError> {
        if !value.is_finite() || value < 0.0 {
            return Err(ShopError::Invalid(format!(
                "`{field}` must be a number >= 0, got {value}"
            )));
        }
        let cents = value * 100.0;
        if cents > MAX_CENTS as f64 {
            return Err(ShopError::Invalid(format!(
                "`{field}` is too large (at most {})",
                MAX_CENTS / 100
            )));
        }
        let rounded = cents.round();
        if (cents - rounded).abs() > 1e-6 * rounded.max(1.0) {
            return Err(ShopError::Invalid(format!(
                "`{field}` has more than two decimal places: {value}"
            )));
        }
        Ok(Self(rounded as i64))
    }

    /// The decimal value for the wire.
    #[must_use]
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.to_f64())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Ok(Self((v * 100.0).round() as i64))
    }
}
