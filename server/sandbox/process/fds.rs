//! Descriptors as message fields. While [`super::channel`] encodes or decodes one datagram, this
//! module holds the datagram's descriptor table (per thread); the field codecs [`one`] and
//! [`option`] put a descriptor into it or take one out by position, so on the wire a descriptor
//! field is its index among the datagram's `SCM_RIGHTS` descriptors (`null` when absent).
//! Outside a channel the codecs fail, so a descriptor is never serialized as a bare number.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

thread_local! {
    /// Descriptors of the message being encoded on this thread (`None`: not encoding).
    static OUTGOING: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    /// Descriptors of the message being decoded on this thread (`None`: not decoding).
    static INCOMING: RefCell<Option<Incoming>> = const { RefCell::new(None) };
}

struct Incoming {
    fds: Vec<Option<OwnedFd>>,
    /// The first position the message named that had no descriptor (or one already taken).
    missing: Option<usize>,
}

/// Runs `encode` with an empty outgoing table; returns its result and the descriptors it named,
/// in order.
pub fn encoding<T>(encode: impl FnOnce() -> T) -> (T, Vec<RawFd>) {
    OUTGOING.set(Some(Vec::new()));
    let r = encode();
    (r, OUTGOING.take().unwrap_or_default())
}

/// Runs `decode` with `fds` as the incoming table; returns its result, how many descriptors it
/// left untaken (those are closed here), and the first position it named that had none.
pub fn decoding<T>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> T) -> (T, usize, Option<usize>) {
    INCOMING.set(Some(Incoming { fds: fds.into_iter().map(Some).collect(), missing: None }));
    let r = decode();
    let (left, missing) = INCOMING.take().map_or((0, None), |inc| (inc.fds.into_iter().flatten().count(), inc.missing));
    (r, left, missing)
}

/// Adds `fd` to the message being encoded; returns its position.
fn put_fd(fd: &OwnedFd) -> Result<usize, &'static str> {
    OUTGOING.with_borrow_mut(|out| match out {
        Some(fds) => {
            fds.push(fd.as_raw_fd());
            Ok(fds.len() - 1)
        }
        None => Err("a descriptor can only be sent through a Channel"),
    })
}

/// Takes the descriptor at `index` out of the message being decoded.
fn take_fd(index: usize) -> Result<OwnedFd, String> {
    INCOMING.with_borrow_mut(|inc| {
        let Some(inc) = inc else {
            return Err("a descriptor can only be received through a Channel".to_string());
        };
        match inc.fds.get_mut(index).and_then(Option::take) {
            Some(fd) => Ok(fd),
            None => {
                inc.missing.get_or_insert(index);
                Err(format!("no descriptor {index}"))
            }
        }
    })
}

/// Codec of an `OwnedFd` field.
pub mod one {
    use super::*;

    pub fn serialize<S: Serializer>(fd: &OwnedFd, s: S) -> Result<S::Ok, S::Error> {
        put_fd(fd).map_err(serde::ser::Error::custom)?.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OwnedFd, D::Error> {
        take_fd(usize::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Codec of an `Option<OwnedFd>` field (`null` when absent).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(fd: &Option<OwnedFd>, s: S) -> Result<S::Ok, S::Error> {
        match fd {
            Some(fd) => Some(put_fd(fd).map_err(serde::ser::Error::custom)?).serialize(s),
            None => None::<usize>.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OwnedFd>, D::Error> {
        match Option::<usize>::deserialize(d)? {
            Some(i) => take_fd(i).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}
