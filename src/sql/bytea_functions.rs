//! Functions over bytea: bits and bytes (`get_bit`, `set_bit`, `get_byte`, `set_byte`,
//! `bit_count`), and conversions between text and bytes (`encode` / `decode` in the
//! `hex`, `base64` and `escape` formats, `convert_from` / `convert_to` for UTF-8, the
//! only server encoding).
//!
//! Bits are numbered as PostgreSQL numbers them: bit n is bit `n % 8` (least
//! significant first) of byte `n / 8`.

use crate::error::{Error, ErrorKind, Result};
use crate::sql::types::{parse_bytea, Datum};

/// Evaluates `name` on non-NULL arguments whose first is bytea.
pub fn eval(name: &str, vals: &[Datum]) -> Result<Datum> {
    let Some(Datum::Bytes(bytes)) = vals.first() else {
        return Err(Error::mismatch(format!("{name}() needs a bytea")));
    };
    let int = |i: usize| match vals.get(i) {
        Some(Datum::Int(n)) => Ok(*n),
        _ => Err(Error::mismatch(format!("{name}() needs an integer"))),
    };
    let text = |i: usize| match vals.get(i) {
        Some(Datum::Text(t)) => Ok(t.clone()),
        _ => Err(Error::mismatch(format!("{name}() needs a text argument"))),
    };
    let index = |n: i64, len: usize| -> Result<usize> {
        if n < 0 || n as u64 >= len as u64 {
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!("index {n} out of valid range, 0..{}", len as i64 - 1),
            ));
        }
        Ok(n as usize)
    };
    Ok(match name {
        "get_bit" => {
            let n = index(int(1)?, bytes.len() * 8)?;
            Datum::Int(i64::from((bytes[n / 8] >> (n % 8)) & 1))
        }
        "set_bit" => {
            let n = index(int(1)?, bytes.len() * 8)?;
            let bit = int(2)?;
            if bit != 0 && bit != 1 {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    "new bit must be 0 or 1",
                ));
            }
            let mut out = bytes.clone();
            if bit == 1 {
                out[n / 8] |= 1 << (n % 8);
            } else {
                out[n / 8] &= !(1 << (n % 8));
            }
            Datum::Bytes(out)
        }
        "get_byte" => Datum::Int(i64::from(bytes[index(int(1)?, bytes.len())?])),
        "set_byte" => {
            let n = index(int(1)?, bytes.len())?;
            let mut out = bytes.clone();
            // Only the low 8 bits of the new value count, as in PostgreSQL.
            out[n] = int(2)? as u8;
            Datum::Bytes(out)
        }
        "bit_count" => Datum::Int(bytes.iter().map(|b| i64::from(b.count_ones())).sum()),
        "encode" => Datum::Text(encode(bytes, &text(1)?)?),
        "convert_from" => {
            check_encoding(&text(1)?)?;
            Datum::Text(String::from_utf8(bytes.clone()).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidTextRepresentation,
                    "invalid byte sequence for encoding \"UTF8\"",
                )
            })?)
        }
        other => return Err(Error::unsupported(format!("function {other}"))),
    })
}

/// Refuses every encoding but UTF-8 (`UTF8`, `utf-8`, …).
pub fn check_encoding(encoding: &str) -> Result<()> {
    let normalized: String = encoding
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    if normalized == "utf8" {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidParameterValue,
            format!("invalid destination encoding name \"{encoding}\""),
        ))
    }
}

fn unknown_format(format: &str) -> Error {
    Error::new(
        ErrorKind::InvalidParameterValue,
        format!("unrecognized encoding: \"{format}\""),
    )
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `encode(bytes, format)`.
pub fn encode(bytes: &[u8], format: &str) -> Result<String> {
    Ok(match format.to_ascii_lowercase().as_str() {
        "hex" => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        "base64" => {
            let mut out = String::new();
            for (i, chunk) in bytes.chunks(3).enumerate() {
                // PostgreSQL breaks base64 lines at 76 characters.
                if i > 0 && i % 19 == 0 {
                    out.push('\n');
                }
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |acc, (k, b)| acc | u32::from(*b) << (16 - 8 * k));
                for k in 0..4 {
                    if k <= chunk.len() {
                        out.push(BASE64[(n >> (18 - 6 * k) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        }
        "escape" => {
            let mut out = String::new();
            for &b in bytes {
                match b {
                    b'\\' => out.push_str("\\\\"),
                    0 | 0x80..=0xff => out.push_str(&format!("\\{b:03o}")),
                    _ => out.push(b as char),
                }
            }
            out
        }
        _ => return Err(unknown_format(format)),
    })
}

/// `decode(text, format)`.
pub fn decode(text: &str, format: &str) -> Result<Vec<u8>> {
    Ok(match format.to_ascii_lowercase().as_str() {
        "hex" => parse_bytea(&format!("\\x{text}"))?,
        "escape" => {
            if text.starts_with("\\x") {
                // Not the hex input format here: the escape format reads `\x` as an error.
                return Err(Error::new(
                    ErrorKind::InvalidTextRepresentation,
                    "invalid input syntax for type bytea",
                ));
            }
            parse_bytea(text)?
        }
        "base64" => {
            let invalid = |c: char| {
                Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("invalid symbol \"{c}\" found while decoding base64 sequence"),
                )
            };
            let mut out = Vec::new();
            let (mut acc, mut bits, mut padding) = (0u32, 0u32, 0usize);
            for c in text.chars() {
                if c.is_ascii_whitespace() {
                    continue;
                }
                if c == '=' {
                    padding += 1;
                    continue;
                }
                if padding > 0 {
                    return Err(invalid(c));
                }
                let v = BASE64
                    .iter()
                    .position(|&b| b as char == c)
                    .ok_or_else(|| invalid(c))? as u32;
                acc = acc << 6 | v;
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits) as u8);
                    acc &= (1 << bits) - 1;
                }
            }
            out
        }
        _ => return Err(unknown_format(format)),
    })
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn base64_round_trips() {
        for input in [
            &b""[..],
            b"1",
            b"12",
            b"123",
            b"123\0\x01",
            &[0xfc, 0x0f, 0xff],
        ] {
            let text = encode(input, "base64").unwrap();
            assert_eq!(decode(&text, "base64").unwrap(), input, "{text}");
        }
        assert_eq!(encode(b"123\0\x01", "base64").unwrap(), "MTIzAAE=");
        assert_eq!(decode("MTIz/A+=", "base64").unwrap(), b"123\xfc\x0f");
    }

    #[test]
    fn escape_format() {
        assert_eq!(
            encode(&[0xc3, 0xb1, b'a', b'\\'], "escape").unwrap(),
            "\\303\\261a\\\\"
        );
        assert_eq!(decode("\\303\\261", "escape").unwrap(), vec![0xc3, 0xb1]);
    }
}
