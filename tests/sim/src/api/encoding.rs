//! Base64 (Secret data) and list continue tokens.

use crate::error::{ApiError, ApiResult};
use serde_json::{json, Value};

pub fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..4 {
            if i <= ch.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = vec![];
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub(super) fn encode_continue(key: &str, rv: u64) -> String {
    b64(json!({"start": key, "rv": rv}).to_string().as_bytes())
}

pub(super) fn decode_continue(t: &str) -> ApiResult<(String, u64)> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = b64_decode(t).ok_or_else(bad)?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v["start"].as_str().ok_or_else(bad)?.to_string(),
        v["rv"].as_u64().ok_or_else(bad)?,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_round_trip() {
        for s in ["", "a", "ab", "abc", "hello world"] {
            assert_eq!(
                super::b64_decode(&super::b64(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(super::b64(b"hi"), "aGk=");
    }
}
