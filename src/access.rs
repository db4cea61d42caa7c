//! Who may read the live statistics: maintainers holding the stats token.
//!
//! The live stats API, the live dashboard and `/metrics` always need the
//! token; nothing live is public. The token is either given in
//! `ANONSTATS_STATS_TOKEN`, or generated on the first start and kept only as
//! its SHA-256 in the settings table, so that every collector sharing the
//! database accepts it and a database reader cannot use it. `anonstats
//! token` replaces the stored one; running collectors pick the new hash up
//! within [`REFRESH`].
//!
//! A browser signs in once with the token and then holds a session cookie:
//! an expiry and an HMAC of it keyed by the token's hash. The cookie never
//! holds the token, every collector of the database can check it without
//! shared state, and replacing the token ends every session.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::{DbConn, PooledConn};
use crate::store;

/// Setting holding the SHA-256 of the generated stats token (hex).
pub const TOKEN_HASH_SETTING: &str = "stats_token_sha256";
/// How long a running collector keeps the stored token hash before it
/// reads it again (so that `anonstats token` takes effect without a restart).
pub const REFRESH: Duration = Duration::from_secs(10);
/// How long a dashboard sign-in lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "anonstats_session";

/// The SHA-256 of a token: what is kept and compared, never the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Reads a stored hash (hex).
    pub fn from_hex(s: &str) -> Option<TokenHash> {
        let bytes: [u8; 32] = hex::decode(s.trim()).ok()?.try_into().ok()?;
        Some(TokenHash(bytes))
    }

    /// The hash as stored (hex).
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Whether `presented` is the token, in constant time: the presented
    /// value is hashed first, so neither its content nor its length shows.
    pub fn matches(&self, presented: &str) -> bool {
        TokenHash::of(presented).0.ct_eq(&self.0).into()
    }

    fn mac(&self, expiry: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"anonstats session\0");
        mac.update(expiry.to_string().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A session cookie value that lasts until `now + SESSION_LIFETIME`.
    pub fn session(&self, now: DateTime<Utc>) -> String {
        let lifetime = chrono::Duration::from_std(SESSION_LIFETIME).expect("fits");
        let expiry = (now + lifetime).timestamp();
        format!("{expiry}.{}", self.mac(expiry))
    }

    /// Whether `cookie` is a session of this token still valid at `now`.
    pub fn accepts_session(&self, cookie: &str, now: DateTime<Utc>) -> bool {
        let Some((expiry, mac)) = cookie.split_once('.') else {
            return false;
        };
        let Ok(expiry) = expiry.parse::<i64>() else {
            return false;
        };
        let genuine: bool = self.mac(expiry).as_bytes().ct_eq(mac.as_bytes()).into();
        genuine && now.timestamp() < expiry
    }
}

/// A new random token: 32 bytes from the thread's CSPRNG (seeded by the
/// operating system), hex.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Replaces the stored token with a new one and returns the new token.
pub fn rotate_token(conn: &mut DbConn) -> QueryResult<String> {
    let token = generate_token();
    store::set_setting(conn, TOKEN_HASH_SETTING, &TokenHash::of(&token).to_hex())?;
    Ok(token)
}

/// The stored token hash, or a new token (returned in clear, once) whose
/// hash is now stored. When collectors start together the first stored
/// hash wins, and the others return no token.
pub fn stored_or_new(conn: &mut DbConn) -> QueryResult<(TokenHash, Option<String>)> {
    if let Some(hash) = stored(conn)? {
        return Ok((hash, None));
    }
    let token = generate_token();
    let mine = TokenHash::of(&token);
    let kept = store::get_or_insert_setting(conn, TOKEN_HASH_SETTING, &mine.to_hex())?;
    let kept = TokenHash::from_hex(&kept).unwrap_or(mine);
    Ok((kept, (kept == mine).then_some(token)))
}

fn stored(conn: &mut DbConn) -> QueryResult<Option<TokenHash>> {
    Ok(store::get_setting(conn, TOKEN_HASH_SETTING)?
        .as_deref()
        .and_then(TokenHash::from_hex))
}

/// What a request presented.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    /// `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
    /// The session cookie.
    pub session: Option<String>,
}

/// The token hash in force for a running collector.
#[derive(Debug)]
pub struct Access {
    /// From `ANONSTATS_STATS_TOKEN`: fixed for the life of the process.
    configured: Option<TokenHash>,
    /// The stored hash and when it was read.
    stored: Mutex<(TokenHash, Instant)>,
}

impl Access {
    /// Access with the configured token, which then is the only one.
    pub fn configured(hash: TokenHash) -> Access {
        Access {
            configured: Some(hash),
            stored: Mutex::new((hash, Instant::now())),
        }
    }

    /// Access with the stored token hash.
    pub fn stored(hash: TokenHash) -> Access {
        Access {
            configured: None,
            stored: Mutex::new((hash, Instant::now())),
        }
    }

    /// The hash in force, read again from the database when older than
    /// [`REFRESH`] (a failed read keeps the last one).
    pub fn current(&self, conn: impl FnOnce() -> Option<PooledConn>) -> TokenHash {
        if let Some(hash) = self.configured {
            return hash;
        }
        let mut guard = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        if guard.1.elapsed() >= REFRESH {
            if let Some(hash) = conn().and_then(|mut c| stored(&mut c).ok().flatten()) {
                guard.0 = hash;
            }
            guard.1 = Instant::now();
        }
        guard.0
    }

    /// Whether the credentials carry the token or a valid session of it.
    pub fn allows(
        &self,
        credentials: &Credentials,
        now: DateTime<Utc>,
        conn: impl FnOnce() -> Option<PooledConn>,
    ) -> bool {
        if credentials.bearer.is_none() && credentials.session.is_none() {
            return false;
        }
        let hash = self.current(conn);
        credentials
            .bearer
            .as_deref()
            .is_some_and(|t| hash.matches(t))
            || credentials
                .session
                .as_deref()
                .is_some_and(|s| hash.accepts_session(s, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn tokens_are_compared_by_hash() {
        let hash = TokenHash::of("s3cret-token");
        assert!(hash.matches("s3cret-token"));
        assert!(!hash.matches("s3cret-toke"));
        assert!(!hash.matches(""));
        assert_eq!(TokenHash::from_hex(&hash.to_hex()), Some(hash));
        assert!(!format!("{hash:?}").contains(&hash.to_hex()));
        let token = generate_token();
        assert_eq!(token.len(), 64);
        assert_ne!(token, generate_token());
    }

    #[test]
    fn a_session_holds_no_token_and_ends() {
        let token = "s3cret-token";
        let hash = TokenHash::of(token);
        let now = at("2026-12-01T10:00:00Z");
        let session = hash.session(now);
        assert!(!session.contains(token) && !session.contains(&hash.to_hex()));
        assert!(hash.accepts_session(&session, now));
        assert!(hash.accepts_session(&session, at("2026-12-01T21:59:59Z")));
        assert!(!hash.accepts_session(&session, at("2026-12-01T22:00:00Z")));
        // Another token's sessions, forged expiries and garbage fail.
        assert!(!TokenHash::of("other").accepts_session(&session, now));
        let (_, mac) = session.split_once('.').unwrap();
        let later = (now + chrono::Duration::days(30)).timestamp();
        assert!(!hash.accepts_session(&format!("{later}.{mac}"), now));
        for bad in ["", ".", "x.y", "123", "123."] {
            assert!(!hash.accepts_session(bad, now), "{bad}");
        }
    }

    #[test]
    fn credentials_need_the_token_or_a_session() {
        let hash = TokenHash::of("t0ken");
        let access = Access::configured(hash);
        let now = at("2026-12-01T10:00:00Z");
        let allows = |c: Credentials| access.allows(&c, now, || None);
        assert!(!allows(Credentials::default()));
        assert!(allows(Credentials {
            bearer: Some("t0ken".into()),
            session: None
        }));
        assert!(!allows(Credentials {
            bearer: Some("t0ke".into()),
            session: None
        }));
        assert!(allows(Credentials {
            bearer: None,
            session: Some(hash.session(now))
        }));
        assert!(!allows(Credentials {
            bearer: None,
            session: Some("t0ken".into())
        }));
    }
}
