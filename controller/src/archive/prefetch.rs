//! A stream read ahead on its own thread, in a bounded queue of blocks: decryption and
//! decompression of an archive run beside the pass that hashes and writes its entries, as
//! `zstd -dc | tar -x` run side by side, with at most [`BLOCKS`] blocks of [`BLOCK`] bytes
//! in flight.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Bytes per block handed over.
pub(in crate::archive) const BLOCK: usize = 1024 * 1024;
/// Blocks queued ahead of the reader (memory: about `BLOCKS + 2` blocks).
pub(in crate::archive) const BLOCKS: usize = 4;

/// What the reading thread sends: a block of bytes, or the error that ended the stream (then
/// nothing more). End of stream is the channel closing.
type Message = io::Result<Vec<u8>>;

/// Reads `inner` on a thread of its own, [`BLOCK`] bytes at a time.
pub(in crate::archive) struct Prefetch {
    blocks: Receiver<Message>,
    /// Emptied blocks go back to the reading thread, so no block is allocated per read.
    spent: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    /// The stream ended (cleanly or with the error already returned).
    done: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prefetch {
    /// Starts reading `inner` ahead. The thread ends when the stream does, on its first error,
    /// or when this reader is dropped (its next send fails).
    pub(in crate::archive) fn new(mut inner: Box<dyn Read + Send>) -> io::Result<Self> {
        let (tx, blocks) = sync_channel::<Message>(BLOCKS);
        let (spent, returned) = sync_channel::<Vec<u8>>(BLOCKS + 2);
        let thread = std::thread::Builder::new()
            .name("archive-read".into())
            .spawn(move || read_ahead(&mut *inner, &tx, &returned))?;
        Ok(Prefetch {
            blocks,
            spent,
            current: Vec::new(),
            pos: 0,
            done: false,
            thread: Some(thread),
        })
    }
}

fn read_ahead(inner: &mut dyn Read, tx: &SyncSender<Message>, returned: &Receiver<Vec<u8>>) {
    loop {
        let mut block = returned.try_recv().unwrap_or_default();
        block.resize(BLOCK, 0);
        let mut filled = 0;
        // Whole blocks where the stream allows, so the consumer's small tar-header reads are
        // served from memory.
        while filled < BLOCK {
            match inner.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if filled > 0 {
                        block.truncate(filled);
                        if tx.send(Ok(block)).is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        block.truncate(filled);
        if tx.send(Ok(block)).is_err() {
            return;
        }
    }
}

impl Drop for Prefetch {
    /// Waits for the reading thread, so the source (an open file) is closed when the reader
    /// is: the queue is closed first, which ends the thread at its next send.
    fn drop(&mut self) {
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.blocks, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Read for Prefetch {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.blocks.recv() {
                Ok(Ok(block)) => {
                    let spent = std::mem::replace(&mut self.current, block);
                    self.pos = 0;
                    if spent.capacity() > 0 {
                        let _ = self.spent.try_send(spent);
                    }
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
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

    /// A source that hands out its bytes in uneven pieces, then fails.
    struct Pieces {
        data: Vec<u8>,
        pos: usize,
        fail_at_end: bool,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return if self.fail_at_end {
                    Err(io::Error::other("broken source"))
                } else {
                    Ok(0)
                };
            }
            let n = buf.len().min(7919).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn hands_over_every_byte_in_order() {
        let want = data(3 * BLOCK + 12345);
        let mut r = Prefetch::new(Box::new(Pieces {
            data: want.clone(),
            pos: 0,
            fail_at_end: false,
        }))
        .unwrap();
        let mut got = Vec::new();
        // Odd-sized reads across block boundaries, as tar's 512-byte headers make them.
        let mut buf = vec![0u8; 1000];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), want.len());
        assert!(got == want);
        assert_eq!(r.read(&mut buf).unwrap(), 0, "stays at its end");
    }

    #[test]
    fn a_source_error_arrives_after_the_bytes_before_it() {
        let want = data(BLOCK + 10);
        let mut r = Prefetch::new(Box::new(Pieces {
            data: want.clone(),
            pos: 0,
            fail_at_end: true,
        }))
        .unwrap();
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(err.to_string(), "broken source");
        assert!(got == want);
    }

    #[test]
    fn dropping_the_reader_ends_the_thread() {
        // An endless source: the drop waits for the thread, so it returns only if the thread
        // stopped once nobody reads.
        let mut r = Prefetch::new(Box::new(io::repeat(7))).unwrap();
        let mut buf = [0u8; 10];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [7; 10]);
        drop(r);
    }
}
