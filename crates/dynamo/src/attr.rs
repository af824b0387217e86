//! Attribute values, items, and numbers (decimal strings compared and
//! added exactly, as DynamoDB does, up to 38 significant digits).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use bytes::Bytes;
use eddy_wire::Value;
use serde::{Deserialize, Serialize};

use crate::error::{DynamoError, Result, invalid, invalid_param};

/// One attribute value. Numbers are kept in canonical decimal form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Attr {
    S(String),
    N(String),
    B(#[serde(with = "b64")] Vec<u8>),
    #[serde(rename = "BOOL")]
    Bool(bool),
    #[serde(rename = "NULL")]
    Null,
    SS(Vec<String>),
    NS(Vec<String>),
    BS(#[serde(with = "b64s")] Vec<Vec<u8>>),
    L(Vec<Attr>),
    M(BTreeMap<String, Attr>),
}

/// An item: attribute name -> value.
pub type Item = BTreeMap<String, Attr>;

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

mod b64s {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};
    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(&base64::engine::general_purpose::STANDARD.encode(b))?;
        }
        seq.end()
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.into_iter()
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

impl Attr {
    /// DynamoDB's type name: `S`, `N`, `B`, `BOOL`, `NULL`, `SS`, ...
    pub fn type_name(&self) -> &'static str {
        match self {
            Attr::S(_) => "S",
            Attr::N(_) => "N",
            Attr::B(_) => "B",
            Attr::Bool(_) => "BOOL",
            Attr::Null => "NULL",
            Attr::SS(_) => "SS",
            Attr::NS(_) => "NS",
            Attr::BS(_) => "BS",
            Attr::L(_) => "L",
            Attr::M(_) => "M",
        }
    }

    /// Approximate stored size in bytes (DynamoDB's item size rules).
    pub fn size(&self) -> usize {
        match self {
            Attr::S(s) => s.len(),
            Attr::N(n) => n.len() / 2 + 1,
            Attr::B(b) => b.len(),
            Attr::Bool(_) | Attr::Null => 1,
            Attr::SS(v) | Attr::NS(v) => v.iter().map(|s| s.len()).sum(),
            Attr::BS(v) => v.iter().map(|b| b.len()).sum(),
            Attr::L(v) => 3 + v.iter().map(|a| 1 + a.size()).sum::<usize>(),
            Attr::M(m) => 3 + m.iter().map(|(k, a)| 1 + k.len() + a.size()).sum::<usize>(),
        }
    }
}

/// Size of an item as DynamoDB counts it (names plus values).
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + v.size()).sum()
}

/// Equality as DynamoDB compares values: numbers numerically, sets as sets.
pub fn attr_eq(a: &Attr, b: &Attr) -> bool {
    match (a, b) {
        (Attr::N(x), Attr::N(y)) => num_cmp(x, y) == Ordering::Equal,
        (Attr::SS(x), Attr::SS(y)) => set_eq(x, y, |p, q| p == q),
        (Attr::NS(x), Attr::NS(y)) => set_eq(x, y, |p, q| num_cmp(p, q) == Ordering::Equal),
        (Attr::BS(x), Attr::BS(y)) => set_eq(x, y, |p, q| p == q),
        (Attr::L(x), Attr::L(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| attr_eq(p, q))
        }
        (Attr::M(x), Attr::M(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| attr_eq(v, w)))
        }
        _ => a == b,
    }
}

fn set_eq<T>(x: &[T], y: &[T], eq: impl Fn(&T, &T) -> bool) -> bool {
    x.len() == y.len() && x.iter().all(|p| y.iter().any(|q| eq(p, q)))
}

/// Ordering for `<`, `<=`, `>`, `>=` and BETWEEN: defined only between two
/// numbers, two strings or two binaries (else the comparison is false).
pub fn attr_cmp(a: &Attr, b: &Attr) -> Option<Ordering> {
    match (a, b) {
        (Attr::N(x), Attr::N(y)) => Some(num_cmp(x, y)),
        (Attr::S(x), Attr::S(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Attr::B(x), Attr::B(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

// ---------------------------------------------------------------- numbers

/// A parsed decimal: `(-1)^neg × digits × 10^exp`, digits without leading
/// or trailing zeros (empty for zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    neg: bool,
    digits: Vec<u8>,
    exp: i64,
}

impl Decimal {
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        let (neg, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mant, e) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = match mant.find('.') {
            Some(i) => (&mant[..i], &mant[i + 1..]),
            None => (mant, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
        let mut exp = e.checked_sub(frac.len() as i64)?;
        while digits.first() == Some(&0) {
            digits.remove(0);
        }
        while digits.last() == Some(&0) {
            digits.pop();
            exp += 1;
        }
        if digits.is_empty() {
            return Some(Decimal {
                neg: false,
                digits,
                exp: 0,
            });
        }
        Some(Decimal { neg, digits, exp })
    }

    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// Position of the most significant digit (magnitude order).
    fn magnitude(&self) -> i64 {
        self.digits.len() as i64 + self.exp
    }

    fn cmp_abs(&self, o: &Decimal) -> Ordering {
        match (self.is_zero(), o.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        self.magnitude()
            .cmp(&o.magnitude())
            .then_with(|| self.digits.cmp(&o.digits))
    }

    pub fn to_canonical(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let mut s = String::new();
        if self.neg {
            s.push('-');
        }
        let ds: String = self.digits.iter().map(|d| (d + b'0') as char).collect();
        if self.exp >= 0 {
            s.push_str(&ds);
            for _ in 0..self.exp {
                s.push('0');
            }
        } else {
            let point = self.digits.len() as i64 + self.exp;
            if point > 0 {
                s.push_str(&ds[..point as usize]);
                s.push('.');
                s.push_str(&ds[point as usize..]);
            } else {
                s.push_str("0.");
                for _ in 0..-point {
                    s.push('0');
                }
                s.push_str(&ds);
            }
        }
        s
    }

    /// Digits aligned to exponent `e` (≤ self.exp), least significant first.
    fn aligned(&self, e: i64) -> Vec<u8> {
        let mut v: Vec<u8> = vec![0; (self.exp - e) as usize];
        v.extend(self.digits.iter().rev());
        v
    }

    pub fn add(&self, o: &Decimal) -> Decimal {
        if self.is_zero() {
            return o.clone();
        }
        if o.is_zero() {
            return self.clone();
        }
        let e = self.exp.min(o.exp);
        let (a, b) = (self.aligned(e), o.aligned(e));
        let (digits_rev, neg) = if self.neg == o.neg {
            let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
            let mut carry = 0;
            for i in 0..a.len().max(b.len()) {
                let s = a.get(i).copied().unwrap_or(0) + b.get(i).copied().unwrap_or(0) + carry;
                out.push(s % 10);
                carry = s / 10;
            }
            if carry > 0 {
                out.push(carry);
            }
            (out, self.neg)
        } else {
            let (big, small, neg) = match self.cmp_abs(o) {
                Ordering::Equal => {
                    return Decimal {
                        neg: false,
                        digits: vec![],
                        exp: 0,
                    };
                }
                Ordering::Greater => (a, b, self.neg),
                Ordering::Less => (b, a, o.neg),
            };
            let mut out = Vec::with_capacity(big.len());
            let mut borrow = 0i8;
            for (i, &digit) in big.iter().enumerate() {
                let mut d = digit as i8 - small.get(i).copied().unwrap_or(0) as i8 - borrow;
                borrow = 0;
                if d < 0 {
                    d += 10;
                    borrow = 1;
                }
                out.push(d as u8);
            }
            (out, neg)
        };
        let digits: Vec<u8> = digits_rev.into_iter().rev().collect();
        // Renormalise through the canonical text (strips zeros).
        let mut d = Decimal {
            neg,
            digits,
            exp: e,
        };
        while d.digits.first() == Some(&0) {
            d.digits.remove(0);
        }
        while d.digits.last() == Some(&0) {
            d.digits.pop();
            d.exp += 1;
        }
        if d.digits.is_empty() {
            d = Decimal {
                neg: false,
                digits: vec![],
                exp: 0,
            };
        }
        d
    }

    pub fn negate(&self) -> Decimal {
        Decimal {
            neg: !self.neg && !self.is_zero(),
            ..self.clone()
        }
    }
}

impl Ord for Decimal {
    fn cmp(&self, o: &Decimal) -> Ordering {
        match (self.neg, o.neg) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_abs(o),
            (true, true) => o.cmp_abs(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, o: &Decimal) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Numeric comparison of two canonical number strings.
pub fn num_cmp(a: &str, b: &str) -> Ordering {
    match (Decimal::parse(a), Decimal::parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Validates a number as DynamoDB does and returns its canonical form.
pub fn canonical_number(s: &str) -> Result<String> {
    if s.is_empty() {
        return Err(invalid(
            "The parameter cannot be converted to a numeric value",
        ));
    }
    let d = Decimal::parse(s).ok_or_else(|| {
        invalid(format!(
            "The parameter cannot be converted to a numeric value: {s}"
        ))
    })?;
    check_range(&d)?;
    Ok(d.to_canonical())
}

fn check_range(d: &Decimal) -> Result<()> {
    if d.is_zero() {
        return Ok(());
    }
    if d.digits.len() > 38 {
        return Err(invalid(
            "Attempting to store more than 38 significant digits in a Number",
        ));
    }
    if d.magnitude() > 126 {
        return Err(invalid(
            "Number overflow. Attempting to store a number with magnitude larger than supported range",
        ));
    }
    if d.magnitude() < -129 {
        return Err(invalid(
            "Number underflow. Attempting to store a number with magnitude smaller than supported range",
        ));
    }
    Ok(())
}

/// `a + b` for canonical numbers.
pub fn num_add(a: &str, b: &str) -> Result<String> {
    let (x, y) = (
        Decimal::parse(a)
            .ok_or_else(|| invalid("A value provided cannot be converted into a number"))?,
        Decimal::parse(b)
            .ok_or_else(|| invalid("A value provided cannot be converted into a number"))?,
    );
    let r = x.add(&y);
    check_range(&r)?;
    Ok(r.to_canonical())
}

/// `a - b` for canonical numbers.
pub fn num_sub(a: &str, b: &str) -> Result<String> {
    let neg = Decimal::parse(b)
        .ok_or_else(|| invalid("A value provided cannot be converted into a number"))?
        .negate()
        .to_canonical();
    num_add(a, &neg)
}

// ------------------------------------------------------- wire conversions

fn wrong(msg: &str) -> DynamoError {
    invalid(msg)
}

/// An `AttributeValue` of a request, checked as DynamoDB checks it.
pub fn attr_from_value(v: &Value) -> Result<Attr> {
    let Some(members) = v.as_map() else {
        return Err(wrong(
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes",
        ));
    };
    let present: Vec<&(eddy_wire::Key, Value)> = members
        .iter()
        .filter(|(_, v)| !matches!(v, Value::Null))
        .collect();
    if present.is_empty() {
        return Err(wrong(
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes",
        ));
    }
    if present.len() > 1 {
        return Err(wrong(
            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
        ));
    }
    let (ty, val) = (present[0].0.as_ref(), &present[0].1);
    let strings = |v: &Value| -> Vec<String> {
        v.as_list()
            .unwrap_or(&[])
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    Ok(match ty {
        "S" => Attr::S(val.as_str().unwrap_or_default().to_string()),
        "N" => Attr::N(canonical_number(val.as_str().unwrap_or_default())?),
        "B" => Attr::B(val.as_blob().map(|b| b.to_vec()).unwrap_or_default()),
        "BOOL" => Attr::Bool(val.as_bool().unwrap_or(false)),
        "NULL" => {
            if val.as_bool() != Some(true) {
                return Err(wrong(
                    "One or more parameter values were invalid: Null attribute value types must have the value of true",
                ));
            }
            Attr::Null
        }
        "SS" => {
            let v = strings(val);
            if v.is_empty() {
                return Err(invalid_param("An string set  may not be empty"));
            }
            if has_dups(&v) {
                return Err(invalid_param(format!(
                    "Input collection {} contains duplicates.",
                    bracket(&v)
                )));
            }
            Attr::SS(v)
        }
        "NS" => {
            let raw = strings(val);
            if raw.is_empty() {
                return Err(invalid_param("An number set  may not be empty"));
            }
            let v = raw
                .iter()
                .map(|n| canonical_number(n))
                .collect::<Result<Vec<_>>>()?;
            if has_dups(&v) {
                return Err(invalid_param("Input collection contains duplicates"));
            }
            Attr::NS(v)
        }
        "BS" => {
            let v: Vec<Vec<u8>> = val
                .as_list()
                .unwrap_or(&[])
                .iter()
                .filter_map(|b| b.as_blob().map(|b| b.to_vec()))
                .collect();
            if v.is_empty() {
                return Err(invalid_param("Binary sets should not be empty"));
            }
            if has_dups(&v) {
                return Err(invalid_param("Input collection contains duplicates"));
            }
            Attr::BS(v)
        }
        "L" => Attr::L(
            val.as_list()
                .unwrap_or(&[])
                .iter()
                .map(attr_from_value)
                .collect::<Result<_>>()?,
        ),
        "M" => {
            let mut m = BTreeMap::new();
            for (k, v) in val.as_map().unwrap_or(&[]) {
                m.insert(k.to_string(), attr_from_value(v)?);
            }
            Attr::M(m)
        }
        _ => {
            return Err(wrong(
                "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes",
            ));
        }
    })
}

fn has_dups<T: PartialEq>(v: &[T]) -> bool {
    v.iter().enumerate().any(|(i, a)| v[..i].contains(a))
}

fn bracket(v: &[String]) -> String {
    format!("[{}]", v.join(", "))
}

/// An attribute map (`Item`, `Key`, `ExpressionAttributeValues`...).
pub fn item_from_value(v: &Value) -> Result<Item> {
    let mut item = Item::new();
    for (k, v) in v.as_map().unwrap_or(&[]) {
        if matches!(v, Value::Null) {
            continue;
        }
        item.insert(k.to_string(), attr_from_value(v)?);
    }
    Ok(item)
}

pub fn attr_to_value(a: &Attr) -> Value {
    let strings = |v: &[String]| Value::List(v.iter().map(Value::from).collect());
    match a {
        Attr::S(s) => Value::map().with("S", s.as_str()),
        Attr::N(n) => Value::map().with("N", n.as_str()),
        Attr::B(b) => Value::map().with("B", Bytes::from(b.clone())),
        Attr::Bool(b) => Value::map().with("BOOL", *b),
        Attr::Null => Value::map().with("NULL", true),
        Attr::SS(v) => Value::map().with("SS", strings(v)),
        Attr::NS(v) => Value::map().with("NS", strings(v)),
        Attr::BS(v) => Value::map().with(
            "BS",
            Value::List(
                v.iter()
                    .map(|b| Value::Blob(Bytes::from(b.clone())))
                    .collect(),
            ),
        ),
        Attr::L(v) => Value::map().with("L", Value::List(v.iter().map(attr_to_value).collect())),
        Attr::M(m) => Value::map().with("M", item_to_value(m)),
    }
}

pub fn item_to_value(item: &Item) -> Value {
    Value::Map(
        item.iter()
            .map(|(k, v)| (k.clone().into(), attr_to_value(v)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_numerically_not_textually() {
        assert_eq!(num_cmp("10", "9"), Ordering::Greater);
        assert_eq!(num_cmp("-10", "-9"), Ordering::Less);
        assert_eq!(num_cmp("1.50", "1.5"), Ordering::Equal);
        assert_eq!(num_cmp("0.001", "1e-3"), Ordering::Equal);
        assert_eq!(num_cmp("-0", "0"), Ordering::Equal);
        assert_eq!(num_cmp("0.5", "-2"), Ordering::Greater);
        assert_eq!(num_cmp("100", "1e2"), Ordering::Equal);
    }

    #[test]
    fn numbers_are_stored_in_canonical_form() {
        assert_eq!(canonical_number("007").unwrap(), "7");
        assert_eq!(canonical_number("1.500").unwrap(), "1.5");
        assert_eq!(canonical_number("-0.0").unwrap(), "0");
        assert_eq!(canonical_number("1e3").unwrap(), "1000");
        assert_eq!(canonical_number(".25").unwrap(), "0.25");
        assert!(canonical_number("abc").is_err());
        assert!(canonical_number("1".repeat(39).as_str()).is_err());
    }

    #[test]
    fn addition_is_exact_beyond_f64_precision() {
        assert_eq!(num_add("1", "1").unwrap(), "2");
        assert_eq!(num_add("99", "1").unwrap(), "100");
        assert_eq!(num_add("-5", "3").unwrap(), "-2");
        assert_eq!(num_add("0.1", "0.2").unwrap(), "0.3");
        assert_eq!(
            num_add("12345678901234567890123456789", "1").unwrap(),
            "12345678901234567890123456790"
        );
        assert_eq!(num_sub("3", "5").unwrap(), "-2");
        assert_eq!(num_sub("5", "5").unwrap(), "0");
    }

    #[test]
    fn journal_form_round_trips_every_type() {
        let mut m = BTreeMap::new();
        m.insert("x".to_string(), Attr::NS(vec!["1".into(), "2.5".into()]));
        let a = Attr::L(vec![
            Attr::S("s".into()),
            Attr::B(vec![0, 255]),
            Attr::Bool(true),
            Attr::Null,
            Attr::SS(vec!["a".into()]),
            Attr::BS(vec![vec![1], vec![2]]),
            Attr::M(m),
        ]);
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Attr>(&text).unwrap(), a);
        assert_eq!(attr_from_value(&attr_to_value(&a)).unwrap(), a);
    }
}
