//! A terminal's recording: its output chunks and window-size changes with the time each came,
//! in a bounded buffer, written out as an asciicast v2 file (the asciinema format: a JSON header
//! line with the size the recording starts at, then one `[seconds, "o", text]` line per chunk
//! and one `[seconds, "r", "COLSxROWS"]` line per resize).
//!
//! The buffer keeps the newest [`CAST_BYTES`] (the oldest events go first, as in the replay
//! ring); a recording that lost its beginning says so in its header (`title`, and
//! `nsplay_truncated_bytes`), starts its clock at its first kept event and its size at the
//! last size it dropped. Chunks are kept as they came (sharing the bytes handed to the
//! clients); text is decoded only when the file is written, carrying a character split across
//! two chunks over to the next line. A recording holds no descriptor: it outlives its terminal
//! (the session keeps it, see `Session::asciicast`).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

/// Most output bytes a terminal's recording keeps (the newest).
pub const CAST_BYTES: usize = 256 * 1024;
/// What one kept event costs besides its bytes (its time and handle), so a flood of one-byte
/// echoes (or of resizes) is bounded too.
const CHUNK_OVERHEAD: usize = 48;

/// One kept event.
#[derive(Clone)]
enum Event {
    Output(Bytes),
    /// The window's new size (columns, rows).
    Resize(u16, u16),
}

impl Event {
    fn bytes(&self) -> usize {
        match self {
            Event::Output(b) => b.len(),
            Event::Resize(..) => 0,
        }
    }
}

#[derive(Clone)]
pub struct Recording {
    started: Instant,
    started_wall: SystemTime,
    chunks: VecDeque<(Duration, Event)>,
    /// The size in effect before the first kept event (the header's).
    base_size: (u16, u16),
    /// The size now (the last resize recorded).
    size: (u16, u16),
    /// Bytes kept, counting [`CHUNK_OVERHEAD`] per event.
    cost: usize,
    /// Output bytes dropped from the front.
    dropped: u64,
}

impl Recording {
    /// A recording of a `cols`×`rows` terminal.
    pub fn new(cols: u16, rows: u16) -> Recording {
        Recording {
            started: Instant::now(),
            started_wall: SystemTime::now(),
            chunks: VecDeque::new(),
            base_size: (cols, rows),
            size: (cols, rows),
            cost: 0,
            dropped: 0,
        }
    }

    pub fn record(&mut self, chunk: &Bytes) {
        self.record_at(self.started.elapsed(), chunk);
    }

    /// Records that the window is now `cols`×`rows` (nothing if it already was).
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.resize_at(self.started.elapsed(), cols, rows);
    }

    fn resize_at(&mut self, at: Duration, cols: u16, rows: u16) {
        if (cols, rows) == self.size {
            return;
        }
        self.size = (cols, rows);
        self.push(at, Event::Resize(cols, rows));
    }

    /// What the recording holds, in bytes (its bound is [`CAST_BYTES`]).
    pub fn cost(&self) -> usize {
        self.cost
    }

    fn record_at(&mut self, at: Duration, chunk: &Bytes) {
        if chunk.is_empty() {
            return;
        }
        // A chunk larger than the whole buffer keeps only its tail.
        let chunk = if chunk.len() + CHUNK_OVERHEAD > CAST_BYTES {
            let cut = chunk.len() + CHUNK_OVERHEAD - CAST_BYTES;
            self.dropped += cut as u64;
            chunk.slice(cut..)
        } else {
            chunk.clone()
        };
        self.push(at, Event::Output(chunk));
    }

    fn push(&mut self, at: Duration, event: Event) {
        self.cost += event.bytes() + CHUNK_OVERHEAD;
        self.chunks.push_back((at, event));
        while self.cost > CAST_BYTES {
            let Some((_, old)) = self.chunks.pop_front() else { break };
            self.cost -= old.bytes() + CHUNK_OVERHEAD;
            match old {
                Event::Output(b) => self.dropped += b.len() as u64,
                // The kept events start at this size now.
                Event::Resize(cols, rows) => self.base_size = (cols, rows),
            }
        }
    }

    /// The asciicast v2 file of what was kept.
    pub fn asciicast(&self, title: &str) -> String {
        let (cols, rows) = self.base_size;
        let offset =
            if self.dropped > 0 { self.chunks.front().map_or(Duration::ZERO, |c| c.0) } else { Duration::ZERO };
        let start = (self.started_wall + offset).duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let mut header = serde_json::json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": start.as_secs(),
            "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
            "title": title,
        });
        if self.dropped > 0 {
            header["title"] =
                format!("{title} (truncated: the first {} bytes of output are not kept)", self.dropped).into();
            header["nsplay_truncated_bytes"] = self.dropped.into();
        }
        let mut out = header.to_string();
        out.push('\n');
        let mut carry: Vec<u8> = Vec::new();
        let mut first = self.dropped > 0;
        for (at, event) in &self.chunks {
            let t = (at.saturating_sub(offset).as_secs_f64() * 1e6).round() / 1e6;
            let chunk = match event {
                Event::Output(chunk) => chunk,
                Event::Resize(cols, rows) => {
                    out.push_str(&serde_json::json!([t, "r", format!("{cols}x{rows}")]).to_string());
                    out.push('\n');
                    continue;
                }
            };
            carry.extend_from_slice(chunk);
            if std::mem::take(&mut first) {
                // Cut mid-stream: skip the rest of a character whose start was dropped.
                let lead = carry.iter().take(3).take_while(|b| (**b & 0xC0) == 0x80).count();
                carry.drain(..lead);
            }
            let text = decode(&mut carry);
            if text.is_empty() {
                continue;
            }
            out.push_str(&serde_json::json!([t, "o", text]).to_string());
            out.push('\n');
        }
        if !carry.is_empty() {
            // The output ended inside a character.
            out.push_str(
                &serde_json::json!([self.last_time(offset), "o", String::from_utf8_lossy(&carry)]).to_string(),
            );
            out.push('\n');
        }
        out
    }

    fn last_time(&self, offset: Duration) -> f64 {
        self.chunks.back().map_or(0.0, |c| c.0.saturating_sub(offset).as_secs_f64())
    }
}

/// Takes the text at the front of `buf`, leaving an incomplete character at its end for the
/// next chunk; bytes that can never be UTF-8 become U+FFFD.
fn decode(buf: &mut Vec<u8>) -> String {
    let mut text = String::new();
    let mut rest: &[u8] = buf;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                text.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                text.push_str(std::str::from_utf8(good).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        text.push('\u{FFFD}');
                        rest = &bad[n..];
                    }
                    None => {
                        rest = bad; // incomplete: wait for the next chunk
                        break;
                    }
                }
            }
        }
    }
    let keep = rest.len();
    let len = buf.len();
    buf.drain(..len - keep);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(cast: &str) -> Vec<serde_json::Value> {
        cast.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn a_character_split_across_chunks_comes_out_whole() {
        let mut r = Recording::new(100, 30);
        let text = "\x1b[31m赤\x1b[0m 日本語\n".as_bytes();
        // Cut inside 赤 (3 bytes) and inside 本.
        let cut1 = 6;
        let cut2 = text.len() - 5;
        r.record_at(Duration::from_millis(10), &Bytes::copy_from_slice(&text[..cut1]));
        r.record_at(Duration::from_millis(20), &Bytes::copy_from_slice(&text[cut1..cut2]));
        r.record_at(Duration::from_millis(30), &Bytes::copy_from_slice(&text[cut2..]));
        let cast = r.asciicast("t");
        let l = lines(&cast);
        assert_eq!(l[0]["version"], 2);
        assert_eq!((l[0]["width"].as_u64(), l[0]["height"].as_u64()), (Some(100), Some(30)));
        let joined: String = l[1..].iter().map(|e| e[2].as_str().unwrap()).collect();
        assert_eq!(joined, "\x1b[31m赤\x1b[0m 日本語\n");
        assert!(!joined.contains('\u{FFFD}'));
        for e in &l[1..] {
            assert_eq!(e[1], "o");
        }
        assert_eq!(l[1][0].as_f64(), Some(0.01));
        assert!(l[0].get("nsplay_truncated_bytes").is_none());
    }

    #[test]
    fn the_buffer_is_bounded_and_a_truncated_recording_says_so() {
        let mut r = Recording::new(80, 24);
        let chunk = Bytes::from(vec![b'x'; 1000]);
        for i in 0..1000u64 {
            r.record_at(Duration::from_millis(i), &chunk);
        }
        assert!(r.cost <= CAST_BYTES);
        let kept: usize = r.chunks.iter().map(|c| c.1.bytes()).sum();
        assert_eq!(r.dropped as usize + kept, 1000 * 1000);
        let l = lines(&r.asciicast("nsplay"));
        assert_eq!(l[0]["nsplay_truncated_bytes"].as_u64(), Some(r.dropped));
        assert!(l[0]["title"].as_str().unwrap().contains("truncated"));
        // Its clock starts at the first kept chunk.
        assert_eq!(l[1][0].as_f64(), Some(0.0));
        // One chunk larger than the buffer keeps its tail.
        let mut r = Recording::new(80, 24);
        r.record_at(Duration::ZERO, &Bytes::from(vec![b'y'; CAST_BYTES * 2]));
        assert!(r.cost <= CAST_BYTES && r.dropped > CAST_BYTES as u64);
        // A cut through a character does not start the file with a broken one.
        let mut r = Recording::new(80, 24);
        let hon = "本".as_bytes();
        let mut first = vec![b'a'; CAST_BYTES - CHUNK_OVERHEAD - 1];
        first.push(hon[0]);
        r.record_at(Duration::ZERO, &Bytes::from(first));
        let mut second = hon[1..].to_vec();
        second.push(b'x');
        r.record_at(Duration::from_millis(1), &Bytes::from(second));
        assert_eq!(r.chunks.len(), 1, "the first chunk went");
        let l = lines(&r.asciicast("nsplay"));
        let all: String = l[1..].iter().map(|e| e[2].as_str().unwrap()).collect();
        assert_eq!(all, "x");
    }

    #[test]
    fn resizes_are_r_events_and_a_truncated_recording_starts_at_the_size_it_dropped() {
        let mut r = Recording::new(80, 24);
        r.record_at(Duration::from_millis(1), &Bytes::from_static(b"a"));
        r.resize_at(Duration::from_millis(2), 80, 24); // no change: no event
        r.resize_at(Duration::from_millis(3), 132, 43);
        r.record_at(Duration::from_millis(4), &Bytes::from_static(b"b"));
        let l = lines(&r.asciicast("t"));
        assert_eq!((l[0]["width"].as_u64(), l[0]["height"].as_u64()), (Some(80), Some(24)));
        assert_eq!(l.len(), 4, "{l:?}");
        assert_eq!(l[2], serde_json::json!([0.003, "r", "132x43"]));
        assert_eq!(l[3][2], "b");
        // Once the resize itself is dropped, the header has its size.
        for i in 0..CAST_BYTES {
            r.record_at(Duration::from_millis(5 + i as u64), &Bytes::from_static(b"x"));
        }
        let l = lines(&r.asciicast("t"));
        assert_eq!((l[0]["width"].as_u64(), l[0]["height"].as_u64()), (Some(132), Some(43)));
        assert!(l[1..].iter().all(|e| e[1] == "o"));
        assert!(r.cost() <= CAST_BYTES);
    }

    #[test]
    fn bytes_that_are_never_utf8_become_replacement_characters() {
        let mut buf = vec![b'a', 0xff, b'b', 0xe6, 0x97];
        assert_eq!(decode(&mut buf), "a\u{FFFD}b");
        assert_eq!(buf, [0xe6, 0x97], "an incomplete character waits");
        buf.push(0xa5);
        assert_eq!(decode(&mut buf), "日");
        assert!(buf.is_empty());
    }
}
