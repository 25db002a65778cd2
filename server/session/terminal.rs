//! One terminal of a session: the pty master, a ring of recent output replayed to every client
//! that (re)connects, the attached clients, and flow control.
//!
//! Flow control: one reader task per terminal reads the output — from the terminal's relay pipe
//! (the sandbox's `process/relay.rs`; sessions' terminals) or from the pty master itself — and
//! hands each chunk to every attached client through a *bounded* queue, waiting when a queue is full. A client
//! that reads slowly therefore stops the reader, the relay's pipe (512 KiB, charged to the
//! session's relay group) and the pty's buffer fill, and the program writing to it blocks in the
//! kernel — nothing grows in the server. Per terminal the server holds at most the ring ([`RING_BYTES`]),
//! the recording ([`super::cast::CAST_BYTES`], sharing its chunks with the clients' queues)
//! plus [`CLIENT_QUEUE`] chunks of [`CHUNK_BYTES`] per client.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, mpsc};

use nsplay_sandbox::term;

use super::output::{Pace, Typist};
use super::reactor;

/// Recent output kept for replay on reconnect.
pub const RING_BYTES: usize = 64 * 1024;
/// Largest chunk read from the pty at once (and so the largest output frame).
pub const CHUNK_BYTES: usize = 32 * 1024;
/// Chunks queued per client before the reader waits for it.
pub const CLIENT_QUEUE: usize = 16;
/// Most clients attached to one terminal at once.
pub const MAX_CLIENTS: usize = 16;

/// What a client receives, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Data(Bytes),
    Notice(super::Notice),
    /// How many read-only viewers (an instructor) watch now; sent to the other clients when it
    /// changes, and to a client attaching while someone watches.
    Viewers(usize),
    Exit(i32),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TerminalError {
    #[error("this terminal has ended")]
    Ended,
    #[error("too many clients are attached to this terminal (at most {MAX_CLIENTS})")]
    TooManyClients,
}

struct Client {
    tx: mpsc::Sender<Output>,
    size: Option<(u16, u16)>,
    /// A read-only viewer: its size never counts, it keeps nothing alive and is announced.
    viewer: bool,
}

struct State {
    ring: VecDeque<u8>,
    clients: BTreeMap<u64, Client>,
    next_client: u64,
    exit: Option<i32>,
    size: (u16, u16),
    /// Every chunk with its time, the newest [`super::cast::CAST_BYTES`] (the asciicast download).
    recording: super::cast::Recording,
}

pub struct Terminal {
    pub index: u64,
    /// Input and window size; also the output unless `relayed` is set.
    master: AsyncFd<OwnedFd>,
    /// The read end of the terminal's output relay (see `nsplay-sandbox`'s `process/relay.rs`).
    relayed: Option<AsyncFd<OwnedFd>>,
    write_lock: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    /// Set when the program exited: the reader drains what is left and ends.
    exited: Notify,
    /// Cancelled once every client has been handed the exit: the session then drops the
    /// terminal (its descriptors and ring go with the last reference) and keeps only its code.
    finished: tokio_util::sync::CancellationToken,
    /// Time of the last byte typed or client attached (for idle detection).
    pub last_active: Mutex<std::time::Instant>,
    /// Time of the last byte typed (a classroom's "stuck": no input for a while).
    pub last_input: Mutex<std::time::Instant>,
    /// Tells the output budget about keystrokes (other terminals' floods are paced while this
    /// one is in use).
    typist: Option<Typist>,
    /// Host pid of the sandbox's joiner that runs the program (see [`Terminal::set_joiner`]).
    joiner: std::sync::OnceLock<i32>,
}

/// A client's handle: replay first, then `rx` in order. Dropping it detaches.
pub struct Attachment {
    pub id: u64,
    pub replay: Bytes,
    pub rx: mpsc::Receiver<Output>,
}

impl Terminal {
    /// Wraps a pty master (and the read end of its output relay, if any) and starts its reader
    /// task (needs a tokio runtime), paced by `pace` (the server's output budget, see
    /// [`super::output`]) if given.
    pub fn start(
        index: u64,
        master: OwnedFd,
        relayed: Option<OwnedFd>,
        cols: u16,
        rows: u16,
        pace: Option<Pace>,
    ) -> std::io::Result<std::sync::Arc<Terminal>> {
        term::set_nonblocking(&master)?;
        if let Some(r) = &relayed {
            term::set_nonblocking(r)?;
        }
        let term = std::sync::Arc::new(Terminal {
            index,
            master: reactor::register(
                master,
                if relayed.is_some() { Interest::WRITABLE } else { Interest::READABLE | Interest::WRITABLE },
            )?,
            relayed: relayed.map(|r| reactor::register(r, Interest::READABLE)).transpose()?,
            write_lock: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                ring: VecDeque::with_capacity(RING_BYTES),
                clients: BTreeMap::new(),
                next_client: 1,
                exit: None,
                size: (cols, rows),
                recording: super::cast::Recording::new(cols, rows),
            }),
            exited: Notify::new(),
            finished: tokio_util::sync::CancellationToken::new(),
            last_active: Mutex::new(std::time::Instant::now()),
            last_input: Mutex::new(std::time::Instant::now()),
            typist: pace.as_ref().map(Pace::typist),
            joiner: std::sync::OnceLock::new(),
        });
        if term.relayed.is_some() {
            tokio::spawn(relay_reader(term.clone(), pace));
        } else {
            tokio::spawn(reader(term.clone(), pace));
        }
        Ok(term)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the host pid of the sandbox's joiner behind this terminal (closing it may have
    /// to kill the program, see `nsplay_sandbox::Sandbox::kill_terminal_program`).
    pub fn set_joiner(&self, pid: i32) {
        let _ = self.joiner.set(pid);
    }

    pub fn joiner(&self) -> Option<i32> {
        self.joiner.get().copied()
    }

    /// Hangs up the terminal, as closing a terminal window does (see `nsplay_sandbox::term::hang_up`).
    pub fn hang_up(&self) -> std::io::Result<()> {
        term::hang_up(self.master.get_ref().as_fd())
    }

    pub fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
    }

    /// Attaches a client: the current ring as replay, then everything after it.
    pub fn attach(&self) -> Result<Attachment, TerminalError> {
        self.attach_as(false)
    }

    /// Attaches a client, as a read-only `viewer` or not. A viewer's arrival is told to the
    /// other clients ([`Output::Viewers`]); it neither counts as activity nor keeps the session
    /// from idling, and its window size is never applied (the bridge refuses its input).
    pub fn attach_as(&self, viewer: bool) -> Result<Attachment, TerminalError> {
        let mut st = self.lock();
        if let Some(code) = st.exit {
            // A client of an ended terminal still gets the screen and the exit code.
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.try_send(Output::Exit(code));
            let replay = Bytes::from(st.ring.iter().copied().collect::<Vec<u8>>());
            return Ok(Attachment { id: 0, replay, rx });
        }
        if st.clients.len() >= MAX_CLIENTS {
            return Err(TerminalError::TooManyClients);
        }
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let id = st.next_client;
        st.next_client += 1;
        let watching = st.clients.values().filter(|c| c.viewer).count();
        if !viewer && watching > 0 {
            // The queue is new and empty: this cannot fail.
            let _ = tx.try_send(Output::Viewers(watching));
        }
        st.clients.insert(id, Client { tx, size: None, viewer });
        let replay = Bytes::from(st.ring.iter().copied().collect::<Vec<u8>>());
        if viewer {
            announce_viewers(&st);
        } else {
            drop(st);
            self.touch();
        }
        Ok(Attachment { id, replay, rx })
    }

    pub fn detach(&self, id: u64) {
        let mut st = self.lock();
        let was_viewer = st.clients.remove(&id).is_some_and(|c| c.viewer);
        if was_viewer {
            announce_viewers(&st);
            return;
        }
        self.apply_size(&mut st);
        drop(st);
        // The idle clock starts when the last person leaves, not when they last typed.
        self.touch();
    }

    /// Clients attached, read-only viewers not counted.
    pub fn clients(&self) -> usize {
        self.lock().clients.values().filter(|c| !c.viewer).count()
    }

    /// Read-only viewers attached.
    pub fn viewers(&self) -> usize {
        self.lock().clients.values().filter(|c| c.viewer).count()
    }

    /// When someone last typed into this terminal.
    pub fn last_input(&self) -> std::time::Instant {
        *self.last_input.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn exit_code(&self) -> Option<i32> {
        self.lock().exit
    }

    /// Records a client's window size; the pty follows the smallest attached client.
    pub fn resize(&self, client: u64, cols: u32, rows: u32) -> (u16, u16) {
        let size = term::clamp_size(cols, rows);
        let mut st = self.lock();
        if let Some(c) = st.clients.get_mut(&client)
            && !c.viewer
        {
            c.size = Some(size);
        }
        self.apply_size(&mut st);
        st.size
    }

    fn apply_size(&self, st: &mut State) {
        let min = st.clients.values().filter_map(|c| c.size).reduce(|a, b| (a.0.min(b.0), a.1.min(b.1)));
        if let Some(size) = min
            && size != st.size
        {
            st.size = size;
            st.recording.resize(size.0, size.1);
            let _ = term::set_window_size(self.master.get_ref().as_fd(), size.0, size.1);
        }
    }

    /// What the terminal printed and each change of its size, as an asciicast v2 file.
    pub fn asciicast(&self, title: &str) -> String {
        // Rendered outside the lock (the chunks are shared, not copied): output keeps flowing.
        self.recording().asciicast(title)
    }

    /// The recording so far (its chunks shared, not copied): the session keeps it once the
    /// terminal has ended and its descriptors are gone.
    pub fn recording(&self) -> super::cast::Recording {
        self.lock().recording.clone()
    }

    #[cfg(test)]
    pub fn size(&self) -> (u16, u16) {
        self.lock().size
    }

    /// Types bytes into the terminal; waits while the program does not read its input.
    pub async fn write(&self, mut data: &[u8]) -> Result<(), TerminalError> {
        let _guard = self.write_lock.lock().await;
        self.touch();
        *self.last_input.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
        if let Some(t) = &self.typist {
            t.typed();
        }
        while !data.is_empty() {
            if self.lock().exit.is_some() {
                return Err(TerminalError::Ended);
            }
            let mut guard = self.master.writable().await.map_err(|_| TerminalError::Ended)?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(_)) => return Err(TerminalError::Ended),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sends a notice to every attached client (limit events, expiry warnings).
    pub fn notice(&self, notice: &super::Notice) {
        let senders: Vec<mpsc::Sender<Output>> = self.lock().clients.values().map(|c| c.tx.clone()).collect();
        for tx in senders {
            // A notice never blocks the caller; a client too far behind misses it.
            let _ = tx.try_send(Output::Notice(notice.clone()));
        }
    }

    /// Called when the program on the terminal has exited.
    pub fn mark_exited(&self, code: i32) {
        {
            let mut st = self.lock();
            if st.exit.is_some() {
                return;
            }
            st.exit = Some(code);
        }
        self.exited.notify_one();
    }

    /// Completes once the program has exited and every client has been handed the exit code.
    pub async fn finished(&self) {
        self.finished.cancelled().await
    }

    /// Appends to the ring and returns the senders to deliver `chunk` to, atomically with
    /// respect to `attach`, so a new client sees each byte exactly once.
    fn record(&self, chunk: &Bytes) -> Vec<(u64, mpsc::Sender<Output>)> {
        let mut st = self.lock();
        st.recording.record(chunk);
        let overflow = (st.ring.len() + chunk.len()).saturating_sub(RING_BYTES);
        let drop_n = overflow.min(st.ring.len());
        st.ring.drain(..drop_n);
        let tail = &chunk[chunk.len().saturating_sub(RING_BYTES)..];
        st.ring.extend(tail);
        st.clients.iter().map(|(id, c)| (*id, c.tx.clone())).collect()
    }

    async fn deliver(&self, chunk: Bytes) {
        for (id, tx) in self.record(&chunk) {
            if tx.send(Output::Data(chunk.clone())).await.is_err() {
                self.detach(id);
            }
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        nix::unistd::read(self.master.get_ref(), buf).map_err(std::io::Error::from)
    }
}

/// After a chunk was handed on: waits while the terminal is over its share of the output
/// budget. Not reading is what slows the program down (see [`super::output`]).
async fn paced(pace: &mut Option<Pace>, n: usize) {
    if let Some(p) = pace {
        p.wait(n).await
    }
}

/// Tells every client but the viewers how many viewers watch now (never blocking: a client too
/// far behind misses it, as a notice).
fn announce_viewers(st: &State) {
    let n = st.clients.values().filter(|c| c.viewer).count();
    for c in st.clients.values().filter(|c| !c.viewer) {
        let _ = c.tx.try_send(Output::Viewers(n));
    }
}

/// Reads a relayed terminal: the relay already gathers a flood into large chunks and passes
/// on the program's last output before it closes the pipe, so this reads until end of file.
async fn relay_reader(term: std::sync::Arc<Terminal>, mut pace: Option<Pace>) {
    let output = term.relayed.as_ref().expect("a relayed terminal");
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let Ok(mut guard) = output.readable().await else { break };
        match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)) {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                drop(guard);
                term.deliver(Bytes::copy_from_slice(&buf[..n])).await;
                paced(&mut pace, n).await
            }
            Err(_would_block) => continue,
        }
    }
    finish(&term).await;
}

/// Reads the pty master itself (a terminal without a relay). Floods come in the pty's 4 KiB
/// reads: gathering them into larger frames is the relay's work (the sandbox's `process/relay.rs`).
async fn reader(term: std::sync::Arc<Terminal>, mut pace: Option<Pace>) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        tokio::select! {
            biased;
            r = term.master.readable() => {
                let Ok(mut guard) = r else { break };
                match guard.try_io(|_| term.try_read(&mut buf)) {
                    Ok(Ok(0)) | Ok(Err(_)) => break, // EIO: every slave closed
                    Ok(Ok(n)) => {
                        term.deliver(Bytes::copy_from_slice(&buf[..n])).await;
                        paced(&mut pace, n).await
                    }
                    Err(_would_block) => continue,
                }
            }
            _ = term.exited.notified() => {
                // The program is gone; take what it printed last (background jobs may keep the
                // pty open, so do not wait for EOF).
                let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
                while tokio::time::Instant::now() < deadline {
                    match term.try_read(&mut buf) {
                        Ok(n) if n > 0 => term.deliver(Bytes::copy_from_slice(&buf[..n])).await,
                        _ => break,
                    }
                }
                break;
            }
        }
    }
    finish(&term).await;
}

/// After the last output: waits for the exit code and hands it to every client.
async fn finish(term: &Terminal) {
    // Wait for the exit code if the output ended first (it normally arrives within milliseconds).
    let code = loop {
        if let Some(c) = term.exit_code() {
            break c;
        }
        if tokio::time::timeout(Duration::from_secs(5), term.exited.notified()).await.is_err() {
            break term.exit_code().unwrap_or(-1);
        }
    };
    let clients: Vec<mpsc::Sender<Output>> = {
        let mut st = term.lock();
        st.exit.get_or_insert(code);
        std::mem::take(&mut st.clients).into_values().map(|c| c.tx).collect()
    };
    // A client too far behind to take the exit in time loses only its exit message (its queue
    // closes): it must not keep the terminal's descriptors.
    let handed = futures_util::future::join_all(clients.iter().map(|tx| tx.send(Output::Exit(code))));
    let _ = tokio::time::timeout(Duration::from_secs(5), handed).await;
    term.finished.cancel();
}
