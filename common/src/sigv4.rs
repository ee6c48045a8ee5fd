//! AWS Signature Version 4 for S3 requests with an empty body (GET, HEAD, DELETE): what the small
//! S3 reader ([`crate::s3read`]) and the harness's S3 probe need. backup-agent's writes go through
//! the AWS SDK, which signs its own requests.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Credentials and scope of a signature.
#[derive(Clone, Debug)]
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
}

impl Signer<'_> {
    /// The headers (`x-amz-date`, `x-amz-content-sha256`, `authorization`) of a request with an
    /// empty body. `path` is the already URI-encoded path, `query` the canonical query string
    /// (parameters sorted, URI-encoded; see [`canonical_query`]).
    pub fn empty_body_headers(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: &str,
        now: SystemTime,
    ) -> Vec<(String, String)> {
        let date_time = amz_date(now);
        let date = &date_time[..8];
        let empty_hash = hex::encode(Sha256::digest(b""));
        let signed_headers = "host;x-amz-content-sha256;x-amz-date";
        let canonical = format!(
            "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{empty_hash}\nx-amz-date:{date_time}\n\n{signed_headers}\n{empty_hash}"
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let k = hmac(format!("AWS4{}", self.secret_key).as_bytes(), date);
        let k = hmac(&k, self.region);
        let k = hmac(&k, "s3");
        let k = hmac(&k, "aws4_request");
        let signature = hex::encode(hmac(&k, &to_sign));
        vec![
            ("x-amz-date".into(), date_time.clone()),
            ("x-amz-content-sha256".into(), empty_hash),
            (
                "authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                    self.access_key
                ),
            ),
        ]
    }
}

/// URI-encodes per SigV4: unreserved characters kept, everything else `%XX`; `/` kept when
/// `keep_slash` (object keys in paths).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The canonical query string of `params`: names and values URI-encoded, sorted by name.
pub fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut enc: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // Hmac accepts keys of any length, so new_from_slice cannot fail.
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// `YYYYMMDDTHHMMSSZ` for a time.
pub fn amz_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn amz_date_formats() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(amz_date(t), "20231114T221320Z");
    }

    #[test]
    fn query_is_sorted_and_encoded() {
        assert_eq!(
            canonical_query(&[("prefix", "catalog/a b"), ("list-type", "2")]),
            "list-type=2&prefix=catalog%2Fa%20b"
        );
        assert_eq!(uri_encode("/b/k ey/x~", true), "/b/k%20ey/x~");
    }

    /// The example of AWS's SigV4 documentation for S3 ("GET Object", examplebucket, test.txt),
    /// with its headers reduced to the three we sign: the signature must change with every input
    /// and be stable for the same input.
    #[test]
    fn signature_is_deterministic_and_keyed() {
        let t = UNIX_EPOCH + Duration::from_secs(1_369_353_600); // 2013-05-24T00:00:00Z
        let s = Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
        };
        let a = s.empty_body_headers("GET", "examplebucket.s3.amazonaws.com", "/test.txt", "", t);
        let b = s.empty_body_headers("GET", "examplebucket.s3.amazonaws.com", "/test.txt", "", t);
        assert_eq!(a, b);
        assert_eq!(a[0].1, "20130524T000000Z");
        assert!(a[2].1.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
        ));
        let other = Signer {
            secret_key: "x",
            ..s.clone()
        };
        let c =
            other.empty_body_headers("GET", "examplebucket.s3.amazonaws.com", "/test.txt", "", t);
        assert_ne!(a[2], c[2]);
    }
}
