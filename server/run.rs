//! `nsplay run`: one sandboxed program on the caller's terminal, the command-line face of a web
//! session. Relays bytes between the caller's stdin/stdout and the session's pty, follows window
//! size changes, and exits with the program's status after removing the whole session.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::SignalFd;
use nix::sys::termios;

use crate::cli::RunArgs;
use nsplay_sandbox::Event;
use nsplay_sandbox::Sandbox;
use nsplay_sandbox::term;

/// Restores the caller's terminal mode on every exit path.
struct RawMode(Option<termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(orig) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, t);
        }
    }
}

pub fn run(args: &RunArgs) -> i32 {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nsplay: {e}");
            1
        }
    }
}

fn run_inner(args: &RunArgs) -> anyhow::Result<i32> {
    let limits = args.limits.limits();
    limits.validate()?;
    // Signals are taken through a signalfd; block them before any thread exists so that every
    // thread inherits the mask.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGWINCH, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    let sigfd = SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
    )?;
    let (wake_r, wake_w) = nix::unistd::pipe()?;
    let (tx, rx) = mpsc::channel();
    let exe = std::env::current_exe()?;
    let (sandbox, reclaimed) = Sandbox::start(&args.sandbox.config(), &exe, move |ev| {
        let _ = tx.send(ev);
        let _ = nix::unistd::write(&wake_w, b"x");
    })?;
    for left in reclaimed {
        match left.error {
            None => eprintln!("nsplay: reclaimed cgroup {} left by an earlier run", left.name),
            Some(e) => {
                eprintln!("nsplay: could not reclaim cgroup {} left by an earlier run ({e}); it stays", left.name)
            }
        }
    }
    let result = run_session(&sandbox, args, &limits, &sigfd, &wake_r, &rx);
    // Whatever happened to the session, the parent groups nsplay made at start go.
    for left in sandbox.release_cgroups() {
        eprintln!("nsplay: cgroup {} is not empty and stays", left.display());
    }
    result
}

/// One session on this terminal: created, relayed until its program exits, destroyed.
fn run_session(
    sandbox: &Sandbox,
    args: &RunArgs,
    limits: &nsplay_sandbox::Limits,
    sigfd: &SignalFd,
    wake_r: &OwnedFd,
    rx: &mpsc::Receiver<Event>,
) -> anyhow::Result<i32> {
    // Held until the session ends: `nsplay image rm` refuses the image meanwhile.
    let names: Vec<String> = args.image.iter().cloned().collect();
    let (images, _holds) = crate::images::load_for_server(&args.data_dir, &names)?;
    let image = args.image.as_ref().and_then(|n| images.get(n));
    let session = sandbox.create_on(&args.hostname, limits, image)?;
    let stdin = std::io::stdin();
    let is_tty = termios::tcgetattr(stdin.as_fd()).is_ok();
    let (cols, rows) = if is_tty { term::window_size(stdin.as_fd()).unwrap_or((80, 24)) } else { (80, 24) };
    let term = match sandbox.open_terminal(&session, 0, args.command.clone(), (cols, rows), false) {
        Ok(t) => t,
        Err(e) => {
            let _ = sandbox.destroy(&session);
            return Err(e.into());
        }
    };
    let raw = if is_tty { RawMode::enter() } else { RawMode(None) };
    let code = relay(&term.master, sigfd, wake_r, rx, is_tty);
    drop(raw);
    sandbox.destroy(&session)?;
    Ok(code)
}

fn relay(master: &OwnedFd, sigfd: &SignalFd, wake: &OwnedFd, events: &mpsc::Receiver<Event>, is_tty: bool) -> i32 {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdin_open = true;
    let mut master_open = true;
    let mut exit: Option<i32> = None;
    loop {
        if let Some(code) = exit {
            // Drain what the program printed last, then stop.
            if !master_open || !readable(master, 50) {
                return code;
            }
        }
        // A closed fd stays out of the set: poll would report its hang-up forever.
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN), PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
        let master_at = master_open.then(|| {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let stdin_at = stdin_open.then(|| {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        if poll(&mut fds, PollTimeout::from(200u16)).is_err() {
            continue;
        }
        let ready = |i: Option<usize>| i.and_then(|i| fds[i].revents()).is_some_and(|r| !r.is_empty());
        let (sig_r, wake_r, master_r, stdin_r) = (ready(Some(0)), ready(Some(1)), ready(master_at), ready(stdin_at));
        drop(fds);
        if sig_r && let Ok(Some(info)) = sigfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGWINCH) => {
                    if let Ok((c, r)) = term::window_size(stdin.as_fd()) {
                        let _ = term::set_window_size(master.as_fd(), c, r);
                    }
                }
                Ok(s) => return 128 + s as i32,
                Err(_) => {}
            }
        }
        if wake_r {
            let mut b = [0u8; 64];
            let _ = nix::unistd::read(wake, &mut b);
            while let Ok(ev) = events.try_recv() {
                match ev {
                    Event::TerminalExited { terminal: 0, code, .. } => exit = Some(code),
                    Event::SessionExited { status, .. } => exit = Some(exit.unwrap_or(status)),
                    Event::SpawnerGone => exit = Some(exit.unwrap_or(1)),
                    _ => {}
                }
            }
        }
        if master_r {
            match nix::unistd::read(master, &mut buf) {
                Ok(0) | Err(_) => master_open = false,
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]);
                    let _ = stdout.flush();
                }
            }
        }
        if stdin_r {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    // A pipe ended: tell the program with the terminal's end-of-file character.
                    if !is_tty {
                        let _ = nix::unistd::write(master, b"\x04");
                    }
                }
                Ok(n) => {
                    let _ = term::write_all(master, &buf[..n]);
                }
            }
        }
    }
}

fn readable(fd: &OwnedFd, ms: u16) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
        && fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN))
}
