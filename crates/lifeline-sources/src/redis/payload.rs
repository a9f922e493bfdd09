//! The bytes after SYNC: the server's answer line, then the RDB, framed by its length (`$<len>`) or,
//! when the server streams it from its fork without a file (diskless), by a 40-byte random mark
//! before and after (`$EOF:<mark>`). [`Payload`] yields exactly the RDB's bytes; [`Observed`] passes
//! them on while computing the checksum and handing a copy to the key counter.

use std::io::{BufRead, Read};
use std::sync::mpsc::{Receiver, SyncSender};

/// Length of the diskless transfer's end mark.
pub(super) const MARK_LEN: usize = 40;

/// Reads larger than this are split: each becomes one message to the key counter, so the bytes in
/// flight stay bounded.
const MAX_READ: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Mark([u8; MARK_LEN]),
}

impl Framing {
    /// The `$…` line the server answers SYNC with (without CR LF).
    pub(super) fn parse(line: &[u8]) -> Option<Framing> {
        let rest = line.strip_prefix(b"$")?;
        if let Some(mark) = rest.strip_prefix(b"EOF:") {
            return mark.get(..MARK_LEN)?.try_into().ok().map(Framing::Mark);
        }
        std::str::from_utf8(rest)
            .ok()?
            .parse()
            .ok()
            .map(Framing::Length)
    }
}

/// Exactly the RDB's bytes from the connection.
pub(super) struct Payload<'a, R> {
    inner: &'a mut R,
    framing: Framing,
    /// Length framing: bytes still to come.
    left: u64,
    /// Mark framing: bytes read but not given out; the last MARK_LEN may be the mark.
    held: Vec<u8>,
    start: usize,
    done: bool,
}

impl<'a, R: BufRead> Payload<'a, R> {
    pub(super) fn new(inner: &'a mut R, framing: Framing) -> Self {
        Payload {
            inner,
            framing,
            left: match framing {
                Framing::Length(n) => n,
                Framing::Mark(_) => 0,
            },
            held: Vec::new(),
            start: 0,
            done: false,
        }
    }
}

fn cut_short() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the server closed the connection before the whole RDB arrived",
    )
}

impl<R: BufRead> Read for Payload<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(MAX_READ);
        match self.framing {
            Framing::Length(_) => {
                if self.left == 0 || want == 0 {
                    return Ok(0);
                }
                let limit = usize::try_from(self.left).unwrap_or(usize::MAX).min(want);
                let n = self.inner.read(&mut buf[..limit])?;
                if n == 0 {
                    return Err(cut_short());
                }
                self.left -= n as u64;
                Ok(n)
            }
            Framing::Mark(mark) => loop {
                // Until the mark is seen, the last MARK_LEN bytes are held back: they may be it.
                let reserve = if self.done { 0 } else { MARK_LEN };
                let ready = (self.held.len() - self.start).saturating_sub(reserve);
                if ready > 0 || self.done || want == 0 {
                    let n = ready.min(want);
                    buf[..n].copy_from_slice(&self.held[self.start..self.start + n]);
                    self.start += n;
                    return Ok(n);
                }
                self.held.drain(..self.start);
                self.start = 0;
                let old = self.held.len();
                self.held.resize(old + want, 0);
                let n = match self.inner.read(&mut self.held[old..]) {
                    Ok(n) => n,
                    Err(e) => {
                        self.held.truncate(old);
                        return Err(e);
                    }
                };
                self.held.truncate(old + n);
                if n == 0 {
                    return Err(cut_short());
                }
                // As redis-cli does: the transfer ends when what arrived ends with the mark.
                if self.held.ends_with(&mark) {
                    self.held.truncate(self.held.len() - MARK_LEN);
                    self.done = true;
                }
            },
        }
    }
}

/// Passes a stream through, computing Redis's CRC-64 of all but its last 8 bytes (the RDB's
/// checksum of itself) and sending a copy of every read to the key counter.
pub(super) struct Observed<R> {
    inner: R,
    digest: crc::Digest<'static, u64>,
    tail: [u8; 8],
    tail_len: usize,
    total: u64,
    copies: Option<SyncSender<Vec<u8>>>,
}

/// What passed through.
pub(super) struct Seen {
    /// CRC-64 of every byte but the last 8.
    pub crc: u64,
    /// The last 8 bytes (fewer when the stream was shorter).
    pub tail: Vec<u8>,
    pub total: u64,
}

impl<R: Read> Observed<R> {
    pub(super) fn new(inner: R, copies: Option<SyncSender<Vec<u8>>>) -> Self {
        Observed {
            inner,
            digest: super::rdb::CRC.digest(),
            tail: [0; 8],
            tail_len: 0,
            total: 0,
            copies,
        }
    }

    fn observe(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if let Some(tx) = &self.copies {
            // A counter that gave up has dropped its end: the stream goes on without it.
            if tx.send(data.to_vec()).is_err() {
                self.copies = None;
            }
        }
        let n = data.len();
        if self.tail_len + n <= 8 {
            self.tail[self.tail_len..self.tail_len + n].copy_from_slice(data);
            self.tail_len += n;
            return;
        }
        // The bytes that are no longer among the last 8 join the checksum, oldest first.
        let overflow = self.tail_len + n - 8;
        let from_tail = overflow.min(self.tail_len);
        self.digest.update(&self.tail[..from_tail]);
        let from_data = overflow - from_tail;
        self.digest.update(&data[..from_data]);
        let mut tail = [0u8; 8];
        let kept = self.tail_len - from_tail;
        tail[..kept].copy_from_slice(&self.tail[from_tail..self.tail_len]);
        tail[kept..].copy_from_slice(&data[from_data..]);
        self.tail = tail;
        self.tail_len = 8;
    }

    /// Stop sending copies (the counter sees the end of its stream).
    pub(super) fn close(&mut self) {
        self.copies = None;
    }

    pub(super) fn seen(&self) -> Seen {
        Seen {
            crc: self.digest.clone().finalize(),
            tail: self.tail[..self.tail_len].to_vec(),
            total: self.total,
        }
    }
}

impl<R: Read> Read for Observed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n]);
        Ok(n)
    }
}

/// The key counter's end of the copies: a reader over the messages, ending when the sender does.
pub(super) struct Copies {
    rx: Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Copies {
    pub(super) fn new(rx: Receiver<Vec<u8>>) -> Self {
        Copies {
            rx,
            current: Vec::new(),
            pos: 0,
        }
    }

    /// Receive and count what is left, so the sender never waits on a full channel.
    pub(super) fn drain(&mut self) -> u64 {
        let mut n = (self.current.len() - self.pos) as u64;
        self.pos = self.current.len();
        while let Ok(m) = self.rx.recv() {
            n += m.len() as u64;
        }
        n
    }
}

impl Read for Copies {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(m) => {
                    self.current = m;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns at most `step` bytes a call, as a socket may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn the_framing_line_is_a_length_or_a_mark() {
        assert_eq!(Framing::parse(b"$1234"), Some(Framing::Length(1234)));
        let mark = [b'a'; MARK_LEN];
        let mut line = b"$EOF:".to_vec();
        line.extend_from_slice(&mark);
        assert_eq!(Framing::parse(&line), Some(Framing::Mark(mark)));
        assert_eq!(Framing::parse(b"$EOF:short"), None);
        assert_eq!(Framing::parse(b"-ERR"), None);
    }

    #[test]
    fn a_length_framed_payload_stops_at_its_length_and_fails_when_cut() {
        let bytes = data(10_000);
        for step in [1, 7, 4096, 20_000] {
            let mut input = std::io::BufReader::with_capacity(64, Trickle(&bytes, step));
            let mut out = Vec::new();
            Payload::new(&mut input, Framing::Length(9_000))
                .read_to_end(&mut out)
                .expect("reads");
            assert_eq!(out, bytes[..9_000]);
        }
        let mut input = std::io::BufReader::new(&bytes[..]);
        let err = Payload::new(&mut input, Framing::Length(20_000))
            .read_to_end(&mut Vec::new())
            .expect_err("cut short");
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_mark_framed_payload_ends_before_its_mark_whatever_the_reads() {
        let mark: [u8; MARK_LEN] = *b"0123456789abcdef0123456789abcdef01234567";
        let body = data(5_000);
        let mut stream = body.clone();
        stream.extend_from_slice(&mark);
        for step in [1, 3, 39, 40, 41, 1000, 100_000] {
            let mut input = std::io::BufReader::with_capacity(16, Trickle(&stream, step));
            let mut out = Vec::new();
            Payload::new(&mut input, Framing::Mark(mark))
                .read_to_end(&mut out)
                .expect("reads");
            assert_eq!(out, body, "step {step}");
        }
        // No mark: the connection closing is an error, not the end of the RDB.
        let mut input = std::io::BufReader::new(&body[..]);
        let err = Payload::new(&mut input, Framing::Mark(mark))
            .read_to_end(&mut Vec::new())
            .expect_err("no mark");
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn observed_checksums_all_but_the_last_8_bytes_and_copies_everything() {
        for len in [0, 5, 8, 9, 100, 70_000] {
            for step in [1, 3, 8, 9, 4096] {
                let bytes = data(len);
                let (tx, rx) = std::sync::mpsc::sync_channel(4);
                let counter = std::thread::spawn(move || {
                    let mut copy = Vec::new();
                    Copies::new(rx).read_to_end(&mut copy).map(|_| copy)
                });
                let mut observed = Observed::new(Trickle(&bytes, step), Some(tx));
                let mut out = Vec::new();
                observed.read_to_end(&mut out).expect("reads");
                observed.close();
                let seen = observed.seen();
                let body = len.saturating_sub(8);
                assert_eq!(seen.crc, super::super::rdb::CRC.checksum(&bytes[..body]));
                assert_eq!(seen.tail, bytes[body..]);
                assert_eq!(seen.total, len as u64);
                assert_eq!(out, bytes);
                assert_eq!(counter.join().expect("joins").expect("copies"), bytes);
            }
        }
    }
}
