//! Reading a producer's pipe on a thread of its own, so the producer never waits while the
//! consumer compresses: a pipe holds only 64 KiB, and `pg_basebackup` (and the server behind it)
//! would stall whenever lifeline paused to seal a batch or a bundle.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

pub struct ReadAhead {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
    reader: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Read `inner` ahead in blocks of `block` bytes, up to `depth` blocks ahead of the consumer.
    pub fn new(mut inner: impl Read + Send + 'static, block: usize, depth: usize) -> Self {
        let (full_tx, full) = sync_channel::<io::Result<Vec<u8>>>(depth);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(depth + 2);
        let reader = std::thread::spawn(move || loop {
            // Reuse blocks the consumer has finished with: fresh ones cost page faults.
            let mut buf = empty_rx.try_recv().unwrap_or_default();
            buf.resize(block, 0);
            let mut filled = 0;
            let result = loop {
                match inner.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == block {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let end = filled == 0;
            let sent = match result {
                Ok(()) => full_tx.send(Ok(buf)),
                Err(e) => full_tx.send(Err(e)),
            };
            if end || sent.is_err() {
                return;
            }
        });
        ReadAhead {
            full,
            empty,
            current: Vec::new(),
            pos: 0,
            done: false,
            reader: Some(reader),
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            let next = match self.full.recv() {
                Ok(block) => block?,
                Err(_) => Vec::new(),
            };
            let used = std::mem::replace(&mut self.current, next);
            let _ = self.empty.try_send(used);
            self.pos = 0;
            if self.current.is_empty() {
                self.done = true;
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Unblock the reader if it waits to hand over a block, then let it finish.
        while self.full.try_recv().is_ok() {}
        if let Some(reader) = self.reader.take() {
            drop(std::mem::replace(&mut self.full, sync_channel(0).1));
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadAhead;
    use std::io::Read;

    #[test]
    fn passes_every_byte_in_order() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut ahead = ReadAhead::new(std::io::Cursor::new(data.clone()), 4096, 3);
        let mut out = Vec::new();
        ahead.read_to_end(&mut out).expect("read");
        assert_eq!(out, data);
    }

    #[test]
    fn stops_early_without_hanging() {
        let data = vec![1u8; 1 << 20];
        let mut ahead = ReadAhead::new(std::io::Cursor::new(data), 1024, 2);
        let mut first = [0u8; 10];
        ahead.read_exact(&mut first).expect("read");
        drop(ahead);
    }
}
