//! Which tailbox writes which stream.
//!
//! Entry IDs are one database's WAL positions, so a stream can take the entries of one
//! source only. Were a second database (or a second slot of the same one) to write to
//! the same stream, as two clusters configured alike with the default stream names
//! would, its entries would be mixed in with the first one's, and each of its entries
//! whose ID lies below the stream's top would be refused as "already there". So a hash
//! beside the checkpoints (`<checkpoint_key>.streams`: stream → checkpoint owner,
//! `<system identifier>/<slot>/<database>`) records who writes each stream. The writer
//! claims a stream (`HSETNX`) before its first entry of the session goes out, and a
//! stream claimed by another owner stops tailbox before anything is written to it.
//!
//! A stream cannot pass from one database to another (the new one's IDs lie below the
//! old one's entries): a new database gets streams of its own.

use std::{collections::HashSet, sync::Arc};

use redis::{RedisError, aio::MultiplexedConnection};
use tracing::info;

/// The streams this session may write, and how it claims more.
pub(crate) struct StreamClaims {
    /// The hash of claims.
    hash: String,
    /// This tailbox: its checkpoint owner.
    owner: String,
    /// Streams claimed (or found ours) in this session.
    claimed: HashSet<Arc<str>>,
}

/// Why a batch may not be written.
#[derive(Debug)]
pub(crate) enum ClaimError {
    /// Another owner writes the stream (the message names both and the fix).
    Conflict(String),
    /// Redis did not answer the claim.
    Redis(RedisError),
}

impl StreamClaims {
    /// Claims for `owner`, kept beside the checkpoint hash `checkpoint_key`.
    pub fn new(checkpoint_key: &str, owner: &str) -> Self {
        Self { hash: hash_key(checkpoint_key), owner: owner.to_owned(), claimed: HashSet::new() }
    }

    /// Claims every stream of a batch (`streams`, in order) not claimed yet in this
    /// session. `conn` is not the writing connection (see [`crate::writer`]).
    pub async fn claim_streams<'a>(
        &mut self,
        conn: &mut MultiplexedConnection,
        streams: impl Iterator<Item = &'a Arc<str>>,
    ) -> Result<(), ClaimError> {
        let mut last: Option<&Arc<str>> = None;
        for stream in streams {
            // Runs of one stream share the mapper's `Arc`: check each run once.
            if last.is_some_and(|l| Arc::ptr_eq(l, stream)) {
                continue;
            }
            if !self.claimed.contains(stream) {
                self.claim(conn, stream).await?;
            }
            last = Some(stream);
        }
        Ok(())
    }

    async fn claim(
        &mut self,
        conn: &mut MultiplexedConnection,
        stream: &Arc<str>,
    ) -> Result<(), ClaimError> {
        let (newly, holder): (bool, String) = redis::pipe()
            .cmd("HSETNX")
            .arg(&self.hash)
            .arg(&**stream)
            .arg(&self.owner)
            .cmd("HGET")
            .arg(&self.hash)
            .arg(&**stream)
            .query_async(conn)
            .await
            .map_err(ClaimError::Redis)?;
        if holder != self.owner {
            return Err(ClaimError::Conflict(format!(
                "stream {stream} is written by another tailbox ({holder}; this one is {}): entry IDs are \
                 one database's WAL positions, so two databases or slots cannot share a stream; fix: give \
                 this one streams of its own (topic_template, dlq_topic), or, if {holder} is gone for good \
                 and its stream is to be dropped, DEL {stream} and HDEL {} {stream}",
                self.owner, self.hash
            )));
        }
        if newly {
            info!(stream = %stream, owner = %self.owner, "stream claimed");
        }
        self.claimed.insert(Arc::clone(stream));
        Ok(())
    }
}

/// The hash of stream claims beside the checkpoint hash `checkpoint_key`.
pub fn hash_key(checkpoint_key: &str) -> String {
    format!("{checkpoint_key}.streams")
}
